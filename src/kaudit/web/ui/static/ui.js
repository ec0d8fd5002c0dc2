// kaudit dashboard: a little progressive enhancement; every page works without it.
(function () {
  "use strict";
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function offsetText(minutes) {
    var sign = minutes >= 0 ? "+" : "-";
    var m = Math.abs(minutes);
    return "UTC" + sign + pad(Math.floor(m / 60)) + ":" + pad(m % 60);
  }
  document.addEventListener("DOMContentLoaded", function () {
    // Times are shown in UTC; say what the reader's local offset is, and show the
    // local time of each <time> as a tooltip.
    var offset = -new Date().getTimezoneOffset();
    var note = document.querySelectorAll(".js-offset");
    for (var i = 0; i < note.length; i++) {
      note[i].textContent = " (your local time is " + offsetText(offset) + ")";
    }
    var times = document.querySelectorAll("time[datetime]");
    for (var j = 0; j < times.length; j++) {
      var d = new Date(times[j].getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        times[j].title = "local: " + d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" +
          pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" +
          pad(d.getSeconds()) + " (" + offsetText(offset) + ")";
      }
    }
    // Empty filter fields are left out of the URL of a search.
    var form = document.getElementById("search-form");
    if (form) {
      form.addEventListener("submit", function () {
        var fields = form.querySelectorAll("input[name], textarea[name]");
        for (var k = 0; k < fields.length; k++) {
          var f = fields[k];
          if (f.type !== "checkbox" && f.value === "") { f.disabled = true; }
        }
      });
    }
  });
})();
