// breakwater console: live updates and buttons without a page reload. Everything works
// without this file too (forms post and redirect back); it only makes it faster.
"use strict";
(function () {
  var channel = document.getElementById("channel");
  var live = document.getElementById("live");
  // The message whose button this person pressed last: when its update arrives, the
  // keyboard focus (lost with the replaced button) moves to it.
  var pressed = null;

  // Takes the focus to an updated message: its status line when it has one (that is what
  // changed), else the whole message, which then reads out as one region.
  function focusOn(article) {
    var target = article.querySelector(".status") || article;
    target.setAttribute("tabindex", "-1");
    target.focus();
  }

  function place(data) {
    var existing = document.getElementById("m-" + data.id);
    var holder = document.createElement("div");
    holder.innerHTML = data.html;
    var article = holder.firstElementChild;
    if (!article) return;
    if (existing) {
      if (Number(existing.dataset.rev) >= data.rev) return;
      var hadFocus = existing.contains(document.activeElement) || pressed === existing.id;
      existing.replaceWith(article);
      if (hadFocus) {
        pressed = null;
        focusOn(article);
        if (live) live.textContent = "Updated: " + article.querySelector("h2").textContent;
      }
      return;
    }
    if (data.thread === null) {
      var empty = document.getElementById("empty");
      if (empty) empty.remove();
      var section = document.createElement("section");
      section.className = "thread";
      section.id = "t-" + data.id;
      section.setAttribute("aria-label", "Thread");
      section.appendChild(article);
      var replies = document.createElement("ol");
      replies.className = "replies";
      replies.id = "r-" + data.id;
      section.appendChild(replies);
      channel.prepend(section);
      if (live) live.textContent = "New: " + article.querySelector("h2").textContent;
      return;
    }
    var list = document.getElementById("r-" + data.thread);
    if (!list) return;
    var item = document.createElement("li");
    item.appendChild(article);
    list.appendChild(item);
    if (live) live.textContent = "New reply: " + article.querySelector("h2").textContent;
    // A private step (Confirm/Cancel) answers what this person just pressed: take the
    // keyboard focus there.
    var next = article.classList.contains("private") && article.querySelector("button");
    if (next) {
      pressed = null;
      next.focus();
    }
  }

  // A timeline wider than the screen starts at its right end: now and the latest deploys.
  Array.prototype.forEach.call(document.querySelectorAll(".timeline .scroll"), function (box) {
    box.scrollLeft = box.scrollWidth;
  });

  if (channel && window.EventSource) {
    // Only now is it true; without the script the page says to reload instead.
    if (live) live.textContent = "Showing the latest threads. This page updates itself while it is open.";
    var source = new EventSource("/console/events?since=" + encodeURIComponent(channel.dataset.since));
    source.addEventListener("message", function (event) {
      try { place(JSON.parse(event.data)); } catch (e) { /* a malformed event changes nothing */ }
    });
    source.addEventListener("open", function () { document.body.dataset.live = "on"; });
    source.addEventListener("error", function () { document.body.dataset.live = "reconnecting"; });
  }

  // Buttons: post in the background; what they cause arrives as live updates.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("press") || !window.fetch) return;
    event.preventDefault();
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    var article = form.closest("article");
    pressed = article ? article.id : null;
    // getAttribute: the form's "action" input shadows the form.action property.
    fetch(form.getAttribute("action"), {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { "X-Requested-With": "fetch" },
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) {
        pressed = null;
        if (button) button.disabled = false;
        if (live) live.textContent = "The press was refused (" + response.status + "). Reload the page and try again.";
      }
    }, function () {
      pressed = null;
      if (button) button.disabled = false;
      if (live) live.textContent = "breakwater could not be reached; try again.";
    });
  });
})();
