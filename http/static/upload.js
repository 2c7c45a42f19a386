// Uploads a package to the import API as a raw body, with progress, then opens the project's
// overview where its processing shows.
(function () {
  "use strict";
  var form = document.getElementById("package-upload");
  if (!form) return;
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var file = form.elements.file.files[0];
    if (!file) return;
    var bar = form.querySelector("progress"), msg = form.querySelector(".error"), button = form.querySelector("button");
    var url = "/api/v1/projects/" + form.dataset.project + "/imports?filename=" + encodeURIComponent(file.name) +
      "&host_name=" + encodeURIComponent(form.elements.host_name.value);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = function (e) { if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total); };
    xhr.onload = function () {
      if (xhr.status === 201) {
        window.location = "/projects/" + form.dataset.project + "/overview";
        return;
      }
      var text = "Upload failed (" + xhr.status + ")";
      try { text = JSON.parse(xhr.responseText).error.message; } catch (e) { /* not JSON */ }
      msg.textContent = text; msg.hidden = false; button.disabled = false;
    };
    xhr.onerror = function () { msg.textContent = "The connection broke off."; msg.hidden = false; button.disabled = false; };
    msg.hidden = true; bar.hidden = false; button.disabled = true;
    xhr.send(file);
  });
})();
