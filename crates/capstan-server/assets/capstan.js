// Capstan's pages work without this script; with it, they do a little more.
// No inline script is allowed (Content-Security-Policy), so behaviour hangs on data
// attributes.
"use strict";

// Move focus to the first problem shown, so keyboard and screen reader users hear it.
document.addEventListener("DOMContentLoaded", () => {
  const problem = document.querySelector(".problem[role=alert]");
  if (problem) {
    problem.setAttribute("tabindex", "-1");
    problem.focus();
  }
});
