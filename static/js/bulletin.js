// The bulletin page: copy the suggested problems (units below the thresholds) into the 存在问题 box.
// Nothing is saved here: only what the person saves is printed.
document.addEventListener("click", function (event) {
  var button = event.target.closest("#fill-suggestion");
  if (!button) { return; }
  var target = document.getElementById(button.dataset.target);
  var source = document.getElementById(button.dataset.source);
  if (!target || !source) { return; }
  var text = source.textContent.trim();
  target.value = target.value.trim() ? target.value.replace(/\s+$/, "") + "\n" + text : text;
  target.focus();
});
