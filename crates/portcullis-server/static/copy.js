// Copy buttons of the dashboard. A button with data-copy names the id of
// the element whose text it copies. Without this script the buttons stay
// hidden and the text can still be selected and copied by hand.
"use strict";

for (const button of document.querySelectorAll("button[data-copy]")) {
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) {
    continue;
  }
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed: select the key and copy it by hand";
    }
  });
}
