// Task log panels (`section.log-panel`): follow new lines over server-sent events from
// the end of the lines shown, page back when the reader scrolls to the top or asks,
// and keep at most MAX_LINES lines in the page however long the log is. Text is only
// ever set as text (never parsed as HTML); colours become the same classes the server
// renders (src/ui/ansi.rs).
(function () {
  "use strict";

  var MAX_LINES = 3000;
  var RETRY_MS = 5000;

  // --- ANSI SGR escapes to spans with classes, as ansi.rs does it.
  function applySgr(look, params) {
    var codes = params.split(/[;:]/).map(function (p) {
      return p === "" ? 0 : parseInt(p, 10);
    });
    for (var i = 0; i < codes.length; i++) {
      var c = codes[i];
      if (isNaN(c)) continue;
      if (c === 0) look = {};
      else if (c === 1) look.bold = true;
      else if (c === 3) look.italic = true;
      else if (c === 4) look.underline = true;
      else if (c === 22) look.bold = false;
      else if (c === 23) look.italic = false;
      else if (c === 24) look.underline = false;
      else if (c >= 30 && c <= 37) look.fg = c - 30;
      else if (c === 39) look.fg = undefined;
      else if (c >= 40 && c <= 47) look.bg = c - 40;
      else if (c === 49) look.bg = undefined;
      else if (c >= 90 && c <= 97) look.fg = c - 90 + 8;
      else if (c >= 100 && c <= 107) look.bg = c - 100 + 8;
      else if (c === 38 || c === 48) {
        var colour;
        if (codes[i + 1] === 5) {
          colour = codes[i + 2] < 16 ? codes[i + 2] : undefined;
          i += 2;
        } else if (codes[i + 1] === 2) {
          i += 4;
        } else {
          i += 1;
        }
        if (c === 38) look.fg = colour;
        else look.bg = colour;
      }
    }
    return look;
  }

  function classesOf(look) {
    var classes = [];
    if (look.fg !== undefined) classes.push("ansi-fg-" + look.fg);
    if (look.bg !== undefined) classes.push("ansi-bg-" + look.bg);
    if (look.bold) classes.push("ansi-bold");
    if (look.italic) classes.push("ansi-italic");
    if (look.underline) classes.push("ansi-underline");
    return classes.join(" ");
  }

  function copy(look) {
    return { fg: look.fg, bg: look.bg, bold: look.bold, italic: look.italic, underline: look.underline };
  }

  // Appends `text` to `parent` as text nodes and classed spans.
  function appendAnsi(parent, text) {
    var look = {};
    var current = "";
    function flush() {
      if (!current) return;
      var classes = classesOf(look);
      if (classes) {
        var span = document.createElement("span");
        span.className = classes;
        span.textContent = current;
        parent.appendChild(span);
      } else {
        parent.appendChild(document.createTextNode(current));
      }
      current = "";
    }
    var i = 0;
    while (i < text.length) {
      var ch = text.charCodeAt(i);
      if (ch !== 0x1b) {
        if (ch >= 0x20 && ch !== 0x7f && !(ch >= 0x80 && ch < 0xa0) || ch === 9) current += text[i];
        i++;
        continue;
      }
      var next = text[i + 1];
      if (next === "[") {
        var j = i + 2;
        while (j < text.length && !(text.charCodeAt(j) >= 0x40 && text.charCodeAt(j) <= 0x7e)) j++;
        if (j < text.length && text[j] === "m") {
          var before = classesOf(look);
          var after = applySgr(copy(look), text.slice(i + 2, j));
          if (classesOf(after) !== before) {
            flush();
          }
          look = after;
        }
        i = j + 1;
      } else if (next === "]") {
        var k = i + 2;
        while (k < text.length && text.charCodeAt(k) !== 7 && text.charCodeAt(k) !== 0x1b) k++;
        i = text.charCodeAt(k) === 0x1b && text[k + 1] === "\\" ? k + 2 : k + 1;
      } else {
        i += 2;
      }
    }
    flush();
  }

  // One log line, `<time> <LEVEL> <text>`, as the server renders it.
  function lineElement(text, start, end) {
    var div = document.createElement("div");
    div.className = "log-line";
    div.dataset.start = start;
    div.dataset.end = end;
    var first = text.indexOf(" ");
    var second = first < 0 ? -1 : text.indexOf(" ", first + 1);
    var body = document.createElement("span");
    body.className = "log-text";
    if (second > 0) {
      var time = document.createElement("span");
      time.className = "log-time";
      time.textContent = text.slice(0, first);
      var level = text.slice(first + 1, second);
      var levelSpan = document.createElement("span");
      levelSpan.className = "log-level log-level-" + level.toLowerCase();
      levelSpan.textContent = level;
      div.appendChild(time);
      div.appendChild(document.createTextNode(" "));
      div.appendChild(levelSpan);
      div.appendChild(document.createTextNode(" "));
      appendAnsi(body, text.slice(second + 1));
    } else {
      appendAnsi(body, text);
    }
    div.appendChild(body);
    return div;
  }

  function Panel(section) {
    this.section = section;
    this.taskId = section.dataset.taskId;
    this.pageLines = parseInt(section.dataset.pageLines, 10) || 500;
    this.view = section.querySelector(".log-view");
    this.status = section.querySelector(".log-status");
    this.earlier = section.querySelector(".log-earlier");
    this.followButton = section.querySelector(".log-follow");
    this.following = true;
    this.loadingEarlier = false;
    this.source = null;
    this.api = "/api/tasks/" + encodeURIComponent(this.taskId) + "/log";
  }

  Panel.prototype.setStatus = function (text, state) {
    this.status.textContent = text;
    this.section.dataset.state = state;
  };

  Panel.prototype.start = function () {
    var self = this;
    if (this.earlier && this.earlier.tagName === "A") {
      this.earlier.addEventListener("click", function (event) {
        event.preventDefault();
        self.loadEarlier();
      });
    }
    this.followButton.hidden = false;
    this.followButton.addEventListener("click", function () {
      self.setFollowing(!self.following);
    });
    this.view.addEventListener("scroll", function () {
      if (self.view.scrollTop < 40) self.loadEarlier();
      var atBottom = self.view.scrollHeight - self.view.scrollTop - self.view.clientHeight < 4;
      // Scrolling up to read stops following; back at the bottom, it follows again.
      if (!atBottom && self.following && !self.autoScrolling) self.setFollowing(false);
      else if (atBottom && !self.following && self.shownEnd === self.liveEnd) self.setFollowing(true);
      self.autoScrolling = false;
    });
    this.liveEnd = 0;
    if (this.section.dataset.loaded === "true") {
      this.begin(this.section.dataset);
    } else {
      this.reloadTail();
    }
  };

  Panel.prototype.begin = function (range) {
    this.start_ = Number(range.start);
    this.shownEnd = Number(range.end);
    this.moreBefore = String(range.moreBefore) === "true";
    this.showEarlier();
    if (String(range.atTail) === "false") {
      // Lines from the middle of the log: Follow loads the tail first.
      this.liveEnd = -1;
      this.setFollowing(false);
      this.setStatus("Showing earlier lines", "paused");
      return;
    }
    this.liveEnd = Math.max(this.liveEnd || 0, this.shownEnd);
    this.setFollowing(true);
    if (String(range.complete) === "true") {
      this.setStatus("Finished", "finished");
      this.followButton.hidden = true;
    } else {
      this.follow();
    }
  };

  Panel.prototype.showEarlier = function () {
    if (!this.earlier) return;
    if (this.moreBefore) {
      this.earlier.textContent = "Load earlier lines";
      this.earlier.classList.remove("log-at-start");
      this.earlier.removeAttribute("aria-disabled");
    } else {
      this.earlier.textContent = "Start of the log";
      this.earlier.classList.add("log-at-start");
      if (this.earlier.tagName === "A") this.earlier.setAttribute("aria-disabled", "true");
    }
  };

  Panel.prototype.fetchPage = function (query) {
    return fetch(this.api + "?" + query, {
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    }).then(function (response) {
      if (!response.ok) {
        return response.json().then(
          function (problem) { throw new Error(problem.detail || response.statusText); },
          function () { throw new Error(response.statusText); }
        );
      }
      return response.json();
    });
  };

  // Replaces what is shown with the log's last lines (at first, or to come back to
  // the live end after paging far back).
  Panel.prototype.reloadTail = function () {
    var self = this;
    this.setStatus("Loading…", "loading");
    this.fetchPage("tail=" + this.pageLines).then(function (page) {
      self.view.replaceChildren();
      self.appendLines(page.lines);
      self.begin({ start: page.start, end: page.end, moreBefore: page.more_before, complete: page.complete, atTail: true });
    }, function (error) {
      self.setStatus("Cannot load the log: " + error.message, "error");
    });
  };

  Panel.prototype.appendLines = function (lines) {
    var fragment = document.createDocumentFragment();
    lines.forEach(function (line) {
      fragment.appendChild(lineElement(line.text, line.offset_start, line.offset_end));
    });
    var empty = this.view.querySelector(".log-empty");
    if (empty && lines.length) empty.remove();
    this.view.appendChild(fragment);
  };

  Panel.prototype.loadEarlier = function () {
    var self = this;
    if (this.loadingEarlier || !this.moreBefore) return;
    this.loadingEarlier = true;
    this.section.dataset.loadingEarlier = "true";
    this.fetchPage("before=" + this.start_ + "&lines=" + this.pageLines).then(function (page) {
      var fragment = document.createDocumentFragment();
      page.lines.forEach(function (line) {
        fragment.appendChild(lineElement(line.text, line.offset_start, line.offset_end));
      });
      // Keep what the reader looks at in place: the new lines go above it.
      var height = self.view.scrollHeight;
      var top = self.view.scrollTop;
      self.view.insertBefore(fragment, self.view.firstChild);
      self.view.scrollTop = top + (self.view.scrollHeight - height);
      self.start_ = page.start;
      self.moreBefore = page.more_before;
      self.trimBottom();
      self.showEarlier();
    }, function (error) {
      self.setStatus("Cannot load earlier lines: " + error.message, "error");
    }).then(function () {
      self.loadingEarlier = false;
      delete self.section.dataset.loadingEarlier;
    });
  };

  // Paging back far drops the newest lines shown; Follow brings the tail back.
  Panel.prototype.trimBottom = function () {
    var excess = this.view.children.length - MAX_LINES;
    if (excess <= 0) return;
    for (var i = 0; i < excess; i++) this.view.lastElementChild.remove();
    this.shownEnd = Number(this.view.lastElementChild.dataset.end);
    if (this.following) this.setFollowing(false);
  };

  // Live lines push the oldest ones out; they can be paged back in.
  Panel.prototype.trimTop = function () {
    var excess = this.view.children.length - MAX_LINES;
    if (excess <= 0) return;
    var height = this.view.scrollHeight;
    for (var i = 0; i < excess; i++) this.view.firstElementChild.remove();
    if (!this.following) this.view.scrollTop -= height - this.view.scrollHeight;
    this.start_ = Number(this.view.firstElementChild.dataset.start);
    this.moreBefore = true;
    this.showEarlier();
  };

  Panel.prototype.setFollowing = function (on) {
    this.following = on;
    this.followButton.setAttribute("aria-pressed", on ? "true" : "false");
    this.followButton.textContent = on ? "Stop following" : "Follow";
    if (on) {
      if (this.shownEnd !== this.liveEnd) {
        this.reloadTail();
        return;
      }
      this.scrollToBottom();
    }
  };

  Panel.prototype.scrollToBottom = function () {
    this.autoScrolling = true;
    this.view.scrollTop = this.view.scrollHeight;
  };

  Panel.prototype.follow = function () {
    var self = this;
    if (this.source) return;
    var source = new EventSource(this.api + "?follow=true&from=" + this.liveEnd);
    this.source = source;
    this.sourceEnd = this.liveEnd;
    this.setStatus("Connecting…", "connecting");
    source.onopen = function () {
      self.setStatus("Live", "live");
    };
    source.onmessage = function (event) {
      var end = Number(event.lastEventId);
      var start = self.sourceEnd;
      self.sourceEnd = end;
      self.liveEnd = Math.max(self.liveEnd, end);
      // Already shown (the tail was reloaded past it), or the newest lines shown are
      // not the log's newest (paged back far: Follow reloads the tail).
      if (end <= self.shownEnd || start !== self.shownEnd) return;
      self.shownEnd = end;
      var empty = self.view.querySelector(".log-empty");
      if (empty) empty.remove();
      self.view.appendChild(lineElement(event.data, start, end));
      self.trimTop();
      if (self.following) self.scrollToBottom();
    };
    source.addEventListener("end", function (event) {
      source.close();
      self.source = null;
      var finished = "Finished";
      try {
        var end = JSON.parse(event.data);
        finished = "Finished: " + end.state + (end.error ? " (" + end.error + ")" : "");
      } catch (e) { /* the words without the state */ }
      self.setStatus(finished, "finished");
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (too many followers on this node, or signed out): try again later,
        // from the last line received.
        source.close();
        self.source = null;
        self.setStatus("Disconnected; trying again shortly", "reconnecting");
        setTimeout(function () { self.follow(); }, RETRY_MS);
      } else {
        // The browser reconnects by itself, sending Last-Event-ID.
        self.setStatus("Reconnecting…", "reconnecting");
      }
    };
  };

  document.querySelectorAll("section.log-panel").forEach(function (section) {
    if (section.dataset.started) return;
    section.dataset.started = "true";
    new Panel(section).start();
  });
})();
