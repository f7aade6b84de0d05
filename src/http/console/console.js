// The one script of the console, and optional: a chosen CSV file is read into the text area of
// the upload form (without script, paste the CSV there).
document.querySelectorAll("input[data-fills]").forEach(function (input) {
  input.addEventListener("change", function () {
    var file = input.files && input.files[0];
    var target = document.getElementById(input.getAttribute("data-fills"));
    if (!file || !target) return;
    file.text().then(function (text) { target.value = text; });
  });
});
