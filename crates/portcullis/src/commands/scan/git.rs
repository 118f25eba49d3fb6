//! Scanning every blob of a git repository's history with the `git`
//! command-line tool.
//!
//! `git rev-list --all --objects` lists every object reachable from any ref
//! (branches, tags, remotes, the stash), so a key that a later commit
//! deleted is still found. `git cat-file --batch-check` gives each object's
//! type and size, and `git cat-file --batch` streams the blobs one at a
//! time, so memory stays bounded by the largest blob scanned. For each blob
//! that contains a key, `git log --find-object` names the commits that added
//! it and the path they added it at.
//!
//! Only plumbing and `log --raw` run, with external diff drivers off, so a
//! hostile repository's configuration cannot start a program through them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

use super::{Hit, Location, Scan};

/// Scans every blob reachable from any ref of the repository at `repo`.
pub(super) fn scan_repository(repo: &Path, scan: &mut Scan) -> anyhow::Result<()> {
    let listing = run_git(repo, &["rev-list", "--all", "--objects"], None)?;
    let mut names: HashMap<String, String> = HashMap::new();
    let mut objects = String::new();
    for line in String::from_utf8_lossy(&listing).lines() {
        let (id, name) = line.split_once(' ').unwrap_or((line, ""));
        if id.is_empty() {
            continue;
        }
        objects.push_str(id);
        objects.push('\n');
        names.insert(id.to_owned(), name.to_owned());
    }

    let checked = run_git(
        repo,
        &["cat-file", "--batch-check"],
        Some(objects.as_bytes()),
    )?;
    let limit = scan.max_file_size();
    let mut blobs = String::new();
    for line in String::from_utf8_lossy(&checked).lines() {
        let mut fields = line.split(' ');
        let (Some(id), Some("blob"), Some(size)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let size: u64 = size
            .parse()
            .with_context(|| format!("git cat-file printed an invalid size: {line:?}"))?;
        if size > limit {
            let name = blob_name(id, names.get(id));
            scan.skip(&name, &format!("larger than {limit} bytes"));
            continue;
        }
        blobs.push_str(id);
        blobs.push('\n');
    }

    let mut found: Vec<(String, Vec<Hit>)> = Vec::new();
    read_blobs(repo, blobs, limit, |id, contents| {
        let name = blob_name(id, names.get(id));
        let hits = scan.search(&name, contents);
        if !hits.is_empty() {
            found.push((id.to_owned(), hits));
        }
    })?;

    for (id, hits) in found {
        let mut added = commits_adding(repo, &id)?;
        if added.is_empty() {
            let path = names.get(&id).cloned().unwrap_or_default();
            added.push((None, path));
        }
        for (commit, path) in added {
            for hit in &hits {
                let location = Location::Git {
                    commit: commit.clone(),
                    path: path.clone(),
                    position: hit.position,
                };
                scan.record(hit.key, location);
            }
        }
    }
    Ok(())
}

/// Names a blob in the skipped list: its path when git gave one, and its id.
fn blob_name(id: &str, path: Option<&String>) -> String {
    match path.filter(|path| !path.is_empty()) {
        Some(path) => format!("{path} (blob {id})"),
        None => format!("blob {id}"),
    }
}

/// Streams the blobs listed in `ids` (one id a line) through
/// `git cat-file --batch` and calls `visit` with each id and its contents.
fn read_blobs(
    repo: &Path,
    ids: String,
    limit: u64,
    mut visit: impl FnMut(&str, &[u8]),
) -> anyhow::Result<()> {
    let mut child = git_command(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("failed to start git; is it installed and on PATH?")?;

    // git writes output while it reads input, so the ids are written from another
    // thread: writing them all first could fill both pipes and deadlock.
    let mut stdin = child.stdin.take().context("git cat-file has no stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(ids.as_bytes()));

    let stdout = child.stdout.take().context("git cat-file has no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut header = String::new();
    let mut contents = Vec::new();
    let result = loop {
        header.clear();
        match reader.read_line(&mut header) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(error) => break Err(anyhow::Error::new(error).context("reading git cat-file")),
        }
        // The header is `<id> <type> <size>`, then the contents and a LF.
        let mut fields = header.trim_end().split(' ');
        let (Some(id), Some(_), Some(size)) = (fields.next(), fields.next(), fields.next()) else {
            break Err(anyhow::anyhow!(
                "git cat-file printed an unexpected header: {:?}",
                header.trim_end()
            ));
        };
        let Ok(size) = size.parse::<u64>() else {
            break Err(anyhow::anyhow!(
                "git cat-file printed an invalid size: {size:?}"
            ));
        };
        if size > limit {
            break Err(anyhow::anyhow!(
                "git cat-file returned {size} bytes for blob {id}, over the limit of {limit}"
            ));
        }
        contents.clear();
        let read = (&mut reader)
            .take(size + 1)
            .read_to_end(&mut contents)
            .context("reading git cat-file");
        if let Err(error) = read {
            break Err(error);
        }
        if contents.pop() != Some(b'\n') || contents.len() as u64 != size {
            break Err(anyhow::anyhow!(
                "git cat-file output ended inside blob {id}"
            ));
        }
        visit(id, &contents);
    };

    // Closing our end first stops git, and with it the writer, when the
    // loop ended early.
    drop(reader);
    let written = writer.join();
    let output = child
        .wait_with_output()
        .context("waiting for git cat-file")?;
    result?;
    if !output.status.success() {
        anyhow::bail!(
            "git cat-file --batch failed in {}: {}",
            repo.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(anyhow::Error::new(error).context("writing to git cat-file")),
        Err(_) => anyhow::bail!("the thread writing to git cat-file panicked"),
    }
}

/// Returns each commit that added blob `id`, with the path it was added at.
/// Merge commits show no diff here, so a blob that only a merge introduced
/// has no entry.
fn commits_adding(repo: &Path, id: &str) -> anyhow::Result<Vec<(Option<String>, String)>> {
    let find = format!("--find-object={id}");
    let log = run_git(
        repo,
        &[
            "log",
            "--all",
            "--root",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--raw",
            "--no-abbrev",
            "--format=commit %H",
            &find,
        ],
        None,
    )?;

    let mut added = Vec::new();
    let mut commit = None;
    for line in String::from_utf8_lossy(&log).lines() {
        if let Some(id) = line.strip_prefix("commit ") {
            commit = Some(id.to_owned());
            continue;
        }
        // A raw diff line: `:old_mode new_mode old_id new_id status<TAB>path`.
        let Some((meta, path)) = line
            .strip_prefix(':')
            .and_then(|rest| rest.split_once('\t'))
        else {
            continue;
        };
        let new_id = meta.split(' ').nth(3);
        if new_id == Some(id) {
            added.push((commit.clone(), path.to_owned()));
        }
    }
    Ok(added)
}

/// `git -C repo` with settings that keep a repository's own configuration
/// from changing what is printed or running anything.
fn git_command(repo: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(repo)
        .args(["-c", "core.quotePath=false", "-c", "core.fsmonitor=false"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat");
    command
}

/// Runs git with `args` and optional standard input, and returns its
/// standard output. A non-zero exit is an error carrying git's message.
fn run_git(repo: &Path, args: &[&str], input: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    let mut child = git_command(repo)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("failed to start git; is it installed and on PATH?")?;

    let writer = match (input, child.stdin.take()) {
        (Some(input), Some(mut stdin)) => {
            let input = input.to_vec();
            Some(std::thread::spawn(move || stdin.write_all(&input)))
        }
        _ => None,
    };
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for git {}", args.join(" ")))?;
    if let Some(writer) = writer {
        match writer.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                return Err(anyhow::Error::new(error).context("writing to git"));
            }
            Err(_) => anyhow::bail!("the thread writing to git panicked"),
        }
    }
    if !output.status.success() {
        anyhow::bail!(
            "git {} failed in {}: {}",
            args.first().copied().unwrap_or_default(),
            repo.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}
