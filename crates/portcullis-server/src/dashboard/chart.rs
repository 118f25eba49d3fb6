//! Bar charts of requests and failures, laid out on the server and drawn
//! as inline SVG by the `dashboard/chart.html` template.
//!
//! The SVG takes its colours from classes in the embedded style sheet and
//! its geometry from presentation attributes, so the strict CSP (no inline
//! style) allows it. Each chart has a `<title>` and `<desc>` for screen
//! readers, a `<title>` per bar for pointer users, and a table with the
//! same numbers for everyone else.

use portcullis_store::{Granularity, UsagePoint};
use time::OffsetDateTime;
use time::macros::format_description;

/// Width of the SVG's coordinate system. The style sheet scales the SVG
/// to its container, so this only sets the aspect ratio and text size.
const WIDTH: u32 = 720;
/// Height of the SVG's coordinate system.
const HEIGHT: u32 = 220;
/// Room left of the plot for the y-axis labels.
const LEFT: u32 = 56;
/// Room right of the plot.
const RIGHT: u32 = 8;
/// Room above the plot.
const TOP: u32 = 12;
/// Room under the plot for the x-axis labels.
const BOTTOM: u32 = 28;

/// One period's bar, in SVG coordinates.
pub(super) struct Bar {
    pub(super) x: f64,
    pub(super) width: f64,
    pub(super) requests_y: f64,
    pub(super) requests_height: f64,
    pub(super) failures_y: f64,
    pub(super) failures_height: f64,
    /// The period and its counts in words, the bar's tooltip.
    pub(super) label: String,
}

/// A labelled horizontal grid line.
pub(super) struct GridLine {
    pub(super) y: f64,
    pub(super) label: String,
}

/// A label under the x axis.
pub(super) struct Tick {
    pub(super) x: f64,
    pub(super) label: String,
}

/// One period in the table under the chart.
pub(super) struct ChartRow {
    pub(super) period: String,
    pub(super) requests: i64,
    pub(super) failures: i64,
}

/// A laid-out chart, ready for the template.
pub(super) struct Chart {
    /// The prefix of the element ids, unique on the page.
    pub(super) id: &'static str,
    pub(super) title: String,
    /// A summary in words: the window, the totals and the busiest period.
    pub(super) description: String,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) plot_left: u32,
    pub(super) plot_right: u32,
    pub(super) baseline: u32,
    pub(super) bars: Vec<Bar>,
    pub(super) grid: Vec<GridLine>,
    pub(super) ticks: Vec<Tick>,
    pub(super) rows: Vec<ChartRow>,
    pub(super) total_requests: i64,
    pub(super) total_failures: i64,
}

/// The fixed window of a chart: `periods` periods of `granularity`, the
/// last one containing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Window {
    pub(super) granularity: Granularity,
    /// The start of the first period.
    pub(super) since: OffsetDateTime,
    /// The start of the period after the last one.
    pub(super) until: OffsetDateTime,
    pub(super) periods: i64,
}

impl Window {
    /// Builds the window of `periods` periods of `granularity` that ends
    /// with the period containing `now`.
    pub(super) fn ending_at(granularity: Granularity, periods: i64, now: OffsetDateTime) -> Self {
        let until = granularity.period_start(now) + granularity.period();
        Self {
            granularity,
            since: until - granularity.period() * i32::try_from(periods).unwrap_or(i32::MAX),
            until,
            periods,
        }
    }

    /// Yields the start of each period, oldest first.
    fn starts(&self) -> impl Iterator<Item = OffsetDateTime> + '_ {
        let period = self.granularity.period();
        (0..self.periods).map(move |index| self.since + period * index_factor(index))
    }
}

/// Converts a period index to the factor of a `Duration` multiplication.
fn index_factor(index: i64) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// Lays out the chart of `points` over `window`. Periods without a point
/// count as zero, and points outside the window are ignored.
pub(super) fn lay_out(
    id: &'static str,
    title: String,
    window: &Window,
    points: &[UsagePoint],
) -> Chart {
    let rows: Vec<ChartRow> = window
        .starts()
        .map(|start| {
            let point = points.iter().find(|point| point.start == start);
            ChartRow {
                period: period_label(window.granularity, start),
                requests: point.map_or(0, |point| point.requests),
                failures: point.map_or(0, |point| point.failures),
            }
        })
        .collect();
    let total_requests: i64 = rows.iter().map(|row| row.requests).sum();
    let total_failures: i64 = rows.iter().map(|row| row.failures).sum();
    let peak = rows.iter().map(|row| row.requests).max().unwrap_or(0);
    let axis_max = nice_ceiling(peak);

    let plot_width = f64::from(WIDTH - LEFT - RIGHT);
    let plot_height = f64::from(HEIGHT - TOP - BOTTOM);
    let baseline = f64::from(HEIGHT - BOTTOM);
    let slot = plot_width / count_f64(rows.len()).max(1.0);
    let scale = |count: i64| count_f64_i64(count) / count_f64_i64(axis_max) * plot_height;
    let unit = match window.granularity {
        Granularity::Hour => "hour",
        Granularity::Day => "day",
    };

    let bars = rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let requests_height = scale(row.requests);
            let failures_height = scale(row.failures);
            Bar {
                x: round(f64::from(LEFT) + slot * count_f64(index) + slot * 0.1),
                width: round(slot * 0.8),
                requests_y: round(baseline - requests_height),
                requests_height: round(requests_height),
                failures_y: round(baseline - failures_height),
                failures_height: round(failures_height),
                label: format!(
                    "{}: {} {}, {} {}",
                    row.period,
                    row.requests,
                    plural(row.requests, "request", "requests"),
                    row.failures,
                    plural(row.failures, "failure", "failures"),
                ),
            }
        })
        .collect();

    let grid = [0, axis_max / 2, axis_max]
        .into_iter()
        .map(|value| GridLine {
            y: round(baseline - scale(value)),
            label: value.to_string(),
        })
        .collect();

    // Label about six periods, so the labels never overlap.
    let every = (rows.len() / 6).max(1);
    let ticks = rows
        .iter()
        .enumerate()
        .filter(|(index, _)| index % every == 0)
        .map(|(index, row)| Tick {
            x: round(f64::from(LEFT) + slot * count_f64(index) + slot / 2.0),
            label: tick_label(window.granularity, &row.period),
        })
        .collect();

    let busiest = rows
        .iter()
        .filter(|row| row.requests == peak && peak > 0)
        .map(|row| row.period.as_str())
        .next();
    let mut description = format!(
        "{} per {unit} from {} to {} (UTC): {total_requests} {} in total, {total_failures} of \
         them failed.",
        title,
        period_label(window.granularity, window.since),
        period_label(
            window.granularity,
            window.until - window.granularity.period()
        ),
        plural(total_requests, "request", "requests"),
    );
    if let Some(busiest) = busiest {
        description.push_str(&format!(
            " The busiest {unit} was {busiest}, with {peak} {}.",
            plural(peak, "request", "requests")
        ));
    }

    Chart {
        id,
        title,
        description,
        width: WIDTH,
        height: HEIGHT,
        plot_left: LEFT,
        plot_right: WIDTH - RIGHT,
        baseline: HEIGHT - BOTTOM,
        bars,
        grid,
        ticks,
        rows,
        total_requests,
        total_failures,
    }
}

/// Returns the smallest of 1, 2 and 5 times a power of ten that is at
/// least `value`, and at least 2 so the middle grid line is a whole number.
fn nice_ceiling(value: i64) -> i64 {
    let mut magnitude: i64 = 1;
    loop {
        for step in [1, 2, 5] {
            let candidate = step * magnitude;
            if candidate >= value.max(2) {
                return candidate;
            }
        }
        match magnitude.checked_mul(10) {
            Some(next) => magnitude = next,
            None => return i64::MAX,
        }
    }
}

/// Names a period: `2026-12-05 14:00` for an hour, `2026-12-05` for a day.
fn period_label(granularity: Granularity, start: OffsetDateTime) -> String {
    let formatted = match granularity {
        Granularity::Hour => start.format(format_description!("[year]-[month]-[day] [hour]:00")),
        Granularity::Day => start.format(format_description!("[year]-[month]-[day]")),
    };
    formatted.unwrap_or_else(|_| start.to_string())
}

/// Shortens a period name for the x axis: the time of an hour, the month
/// and day of a day.
fn tick_label(granularity: Granularity, period: &str) -> String {
    match granularity {
        Granularity::Hour => period.get(11..).unwrap_or(period).to_owned(),
        Granularity::Day => period.get(5..).unwrap_or(period).to_owned(),
    }
}

fn plural(count: i64, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

/// Rounds a coordinate to one decimal, which keeps the SVG short.
fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[expect(
    clippy::cast_precision_loss,
    reason = "a chart has at most a few dozen bars"
)]
fn count_f64(count: usize) -> f64 {
    count as f64
}

#[expect(
    clippy::cast_precision_loss,
    reason = "counts above 2^52 lose precision only in the bar height"
)]
fn count_f64_i64(count: i64) -> f64 {
    count as f64
}

/// Counts the whole periods in a window, for tests.
#[cfg(test)]
fn periods_between(window: &Window) -> i64 {
    let span: time::Duration = window.until - window.since;
    span.whole_seconds() / window.granularity.period().whole_seconds()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn window_ends_with_current_period() {
        let now = datetime!(2026-12-05 14:37:12 UTC);
        let hours = Window::ending_at(Granularity::Hour, 48, now);
        assert_eq!(hours.until, datetime!(2026-12-05 15:00 UTC));
        assert_eq!(hours.since, datetime!(2026-12-03 15:00 UTC));
        assert_eq!(periods_between(&hours), 48);
        let days = Window::ending_at(Granularity::Day, 30, now);
        assert_eq!(days.until, datetime!(2026-12-06 00:00 UTC));
        assert_eq!(days.since, datetime!(2026-11-06 00:00 UTC));
        assert_eq!(periods_between(&days), 30);
    }

    #[test]
    fn chart_fills_missing_periods_with_zero() {
        let now = datetime!(2026-12-05 14:37 UTC);
        let window = Window::ending_at(Granularity::Hour, 48, now);
        let points = [
            UsagePoint {
                start: datetime!(2026-12-05 14:00 UTC),
                requests: 7,
                failures: 2,
            },
            // Outside the window: ignored.
            UsagePoint {
                start: datetime!(2026-12-01 14:00 UTC),
                requests: 1000,
                failures: 0,
            },
        ];
        let chart = lay_out("hours", "Requests".to_owned(), &window, &points);
        assert_eq!(chart.rows.len(), 48);
        assert_eq!(chart.bars.len(), 48);
        assert_eq!(chart.total_requests, 7);
        assert_eq!(chart.total_failures, 2);
        let last = chart.rows.last().unwrap();
        assert_eq!(last.period, "2026-12-05 14:00");
        assert_eq!(last.requests, 7);
        assert_eq!(chart.rows[0].requests, 0);
        assert!(
            chart
                .description
                .contains("busiest hour was 2026-12-05 14:00")
        );
    }

    #[test]
    fn bars_stay_inside_plot() {
        let now = datetime!(2026-12-05 14:37 UTC);
        let window = Window::ending_at(Granularity::Day, 30, now);
        let points = [UsagePoint {
            start: datetime!(2026-12-05 00:00 UTC),
            requests: 9,
            failures: 9,
        }];
        let chart = lay_out("days", "Requests".to_owned(), &window, &points);
        let top = f64::from(TOP);
        let baseline = f64::from(chart.baseline);
        for bar in &chart.bars {
            assert!(bar.requests_y >= top, "{}", bar.requests_y);
            assert!(bar.requests_y + bar.requests_height <= baseline + 0.1);
            assert!(bar.failures_height <= bar.requests_height);
            assert!(bar.x + bar.width <= f64::from(chart.plot_right));
        }
        assert_eq!(chart.grid.last().unwrap().label, "10");
    }

    #[test]
    fn nice_ceiling_rounds_up() {
        assert_eq!(nice_ceiling(0), 2);
        assert_eq!(nice_ceiling(2), 2);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(500), 500);
        assert_eq!(nice_ceiling(501), 1000);
        assert_eq!(nice_ceiling(i64::MAX), i64::MAX);
    }
}
