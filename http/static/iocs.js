// Reads a chosen file into the IOC list box, so the form posts one urlencoded body.
(function () {
  const input = document.getElementById("ioc-file");
  const box = document.querySelector("#ioc-form textarea[name=content]");
  const format = document.querySelector("#ioc-form select[name=format]");
  if (!input || !box) return;
  input.addEventListener("change", async () => {
    const f = input.files[0];
    if (!f) return;
    const text = await f.text();
    box.value = text;
    if (format && /^\s*[\[{]/.test(text)) format.value = "misp";
  });
})();
