// Host selection that survives paging: the chosen host ids live in sessionStorage under a key
// per project and connection, and each page re-checks the boxes of hosts already chosen.
(function () {
  "use strict";
  var table = document.getElementById("hosts");
  if (!table) { return; }
  var key = table.getAttribute("data-selection-key");
  var load = function () {
    try { return new Set(JSON.parse(sessionStorage.getItem(key) || "[]")); } catch (e) { return new Set(); }
  };
  var selected = load();
  var boxes = Array.prototype.slice.call(table.querySelectorAll("input.host-select"));
  var all = document.getElementById("select-page");
  var count = document.getElementById("selection-count");
  var clear = document.getElementById("clear-selection");
  var save = function () {
    sessionStorage.setItem(key, JSON.stringify(Array.from(selected)));
    count.textContent = selected.size + " selected";
    clear.hidden = selected.size === 0;
    all.checked = boxes.length > 0 && boxes.every(function (b) { return b.checked; });
    document.dispatchEvent(new CustomEvent("quarry:selection", { detail: Array.from(selected) }));
  };
  boxes.forEach(function (b) {
    b.checked = selected.has(b.value);
    b.addEventListener("change", function () {
      if (b.checked) { selected.add(b.value); } else { selected.delete(b.value); }
      save();
    });
  });
  all.addEventListener("change", function () {
    boxes.forEach(function (b) {
      b.checked = all.checked;
      if (all.checked) { selected.add(b.value); } else { selected.delete(b.value); }
    });
    save();
  });
  clear.addEventListener("click", function () {
    selected.clear();
    boxes.forEach(function (b) { b.checked = false; });
    save();
  });
  save();
})();

// The Acquire form sends the selection across all pages, then forgets it.
(function () {
  "use strict";
  var table = document.getElementById("hosts");
  var form = document.getElementById("acquire-form");
  if (!table || !form) { return; }
  var key = table.getAttribute("data-selection-key");
  var button = document.getElementById("acquire");
  var hidden = document.getElementById("acquire-hosts");
  var update = function (ids) {
    hidden.value = ids.join(",");
    button.disabled = ids.length === 0;
    button.textContent = ids.length ? "Acquire triage (" + ids.length + " hosts)" : "Acquire triage";
  };
  document.addEventListener("quarry:selection", function (e) { update(e.detail); });
  try { update(JSON.parse(sessionStorage.getItem(key) || "[]")); } catch (e) { update([]); }
  form.addEventListener("submit", function () { sessionStorage.removeItem(key); });
})();
