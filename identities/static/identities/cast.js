/* The cast page (identities/cast/page.py): name groups of faces without page reloads.
 *
 * Plain script, no build step, no dependencies. The server renders every part of the page; this
 * script calls the JSON actions under /admin/cast/api/ (session + CSRF token), then changes the page in
 * place: a named group disappears, a hidden face leaves its group, an undo re-renders the groups
 * (fetched as an HTML fragment of the same page). Names are only ever put in the page as text.
 *
 * Keyboard (outside text boxes): arrows move between faces, Enter goes to the group's name box,
 * a accepts the group's confident suggestion, x takes the face out of its group, h hides it, u undoes.
 * Select many, name once: Ctrl/Cmd/Shift+click or Space selects faces across groups; the selection
 * bar names (or hides) them all in one action, undone in one step.
 */
(function () {
  "use strict";

  const root = document.getElementById("cast");
  if (!root) return;
  const api = root.dataset.api;
  const csrf = root.dataset.csrf;
  const canChange = root.dataset.canChange === "1";
  const status = document.getElementById("cast-status");
  const PLAY_DELAY_MS = 150;
  const COLUMNS = 6;

  // ------------------------------------------------------------------ helpers

  const body = () => document.getElementById("cast-body");
  const allTiles = () => Array.from(body().querySelectorAll(".cast-tile"));
  // A group of faces, or the selection bar (which acts like a group made of the selected faces).
  const groupOf = (element) => element && element.closest(".cast-group, .cast-selection");
  const selection = document.getElementById("cast-selection");
  const isSelection = (element) => element && element.id === "cast-selection";
  const tileOf = (element) => element && element.closest && element.closest(".cast-tile");
  const pksOf = (element) => (element.dataset.pks ? element.dataset.pks.split(",").map(Number) : []);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  async function call(path, payload, method) {
    const options = {
      method: method || "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrf },
    };
    if (options.method === "POST") {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(payload || {});
    }
    let response;
    // 503 BUSY (the database or the media workers are busy; nothing was changed): wait as the
    // server's Retry-After says (at most 3 s) and try again, twice.
    for (let attempt = 0; ; attempt += 1) {
      try {
        response = await fetch(api + path, options);
      } catch (error) {
        return { success: false, status: 0, error: { message: "The server cannot be reached." } };
      }
      const retryAfter = Number(response.headers.get("Retry-After"));
      if (response.status !== 503 || attempt >= 2 || !(retryAfter >= 0)) break;
      say("The server is busy; trying again…");
      await new Promise((resolve) => setTimeout(resolve, Math.min(retryAfter, 3) * 1000 + 200));
    }
    let data;
    try {
      data = await response.json();
    } catch (error) {
      data = { success: false, error: { message: `The server answered ${response.status}.` } };
    }
    data.status = response.status;
    root.dataset.serverTiming = response.headers.get("Server-Timing") || "";
    return data;
  }

  function say(message, kind, withUndo) {
    status.textContent = message;
    status.className = kind || "";
    if (withUndo && canChange) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "cast-undo";
      button.textContent = "Undo (u)";
      status.appendChild(button);
    }
  }

  const failed = (data) => say((data.error && data.error.message) || "That did not work.", "error");

  function setPks(group, pks) {
    group.dataset.pks = pks.join(",");
    const count = group.querySelector(".cast-count");
    if (count) count.textContent = plural(pks.length, "trace");
    const shown = group.querySelectorAll(".cast-tiles > .cast-tile, .cast-tiles > .cast-more").length;
    group.style.setProperty("--cols", String(Math.max(1, Math.min(COLUMNS, shown))));
  }

  function focusTile(tile) {
    if (!tile) return;
    for (const other of root.querySelectorAll('.cast-tile[tabindex="0"]')) other.tabIndex = -1;
    tile.tabIndex = 0;
    tile.focus({ preventScroll: false });
    tile.scrollIntoView({ block: "nearest" });
  }

  function firstTile() {
    return body().querySelector(".cast-tile");
  }

  // The next face to focus once ``tile`` leaves: the next one, else the previous one.
  function neighbour(tile) {
    const tiles = allTiles();
    const at = tiles.indexOf(tile);
    return tiles[at + 1] || tiles[at - 1] || null;
  }

  function chips(group, suggestions) {
    const box = group.querySelector(".cast-chips");
    if (!box) return;
    box.replaceChildren();
    for (const s of suggestions) {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "cast-chip " + (s.confident ? "confident" : "weak");
      chip.dataset.identity = s.identity_uuid;
      chip.dataset.name = s.name;
      chip.disabled = !canChange;
      chip.title = `${s.name}: ${s.confident ? "confident" : "weak"} match, distance ${s.distance.toFixed(2)}`;
      chip.textContent = s.confident ? `Accept: ${s.name}` : `maybe ${s.name}?`;
      box.appendChild(chip);
    }
  }

  // Count, screen time and suggestions of groups the curator reshaped (after "not this person").
  async function summarise(groups) {
    const live = groups.filter((g) => g.isConnected && pksOf(g).length);
    if (!live.length) return;
    const data = await call("summary", { groups: live.map(pksOf) });
    if (!data.success) return;
    live.forEach((group, i) => {
      const summary = data.groups[i];
      const time = group.querySelector(".cast-time");
      if (time) time.textContent = `${summary.screen_seconds.toFixed(1)} s`;
      chips(group, summary.suggestions);
    });
  }

  // ------------------------------------------------------------------ refreshing parts of the page

  function fragmentUrl(fragment) {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", fragment);
    url.hash = "";
    return url.toString();
  }

  async function refreshBody(focusPk) {
    clearSelection();
    const response = await fetch(fragmentUrl("body"), { credentials: "same-origin" });
    if (!response.ok) return;
    const current = tileOf(document.activeElement);
    const keep = focusPk || (current ? current.dataset.pk : null);
    body().innerHTML = await response.text();
    const again = keep && body().querySelector(`.cast-tile[data-pk="${Number(keep)}"]`);
    focusTile(again || firstTile());
  }

  async function refreshNamed() {
    const response = await fetch(fragmentUrl("named"), { credentials: "same-origin" });
    const named = document.getElementById("cast-named");
    if (!response.ok || !named) return;
    const holder = document.createElement("div");
    holder.innerHTML = await response.text();
    named.replaceWith(holder.firstElementChild);
  }

  function bumpHidden(delta) {
    const toggle = body().querySelector(".cast-hidden-toggle");
    if (!toggle) return;
    const count = Math.max(0, Number(toggle.dataset.count || 0) + delta);
    toggle.dataset.count = String(count);
    if (toggle.textContent.startsWith("Hidden")) toggle.textContent = `Hidden (${count})`;
  }

  // The summary line ("N unnamed traces in M groups"), kept true after every action on the page.
  function recount(unnamedDelta, groupsDelta) {
    const counts = body().querySelector(".cast-counts");
    if (!counts) return;
    const unnamed = Math.max(0, Number(counts.dataset.unnamed || 0) + unnamedDelta);
    const groups = unnamed ? Math.max(0, Number(counts.dataset.groups || 0) + groupsDelta) : 0;
    counts.dataset.unnamed = String(unnamed);
    counts.dataset.groups = String(groups);
    const strong = (text, className) => {
      const element = document.createElement("strong");
      element.className = className;
      element.textContent = text;
      return element;
    };
    counts.replaceChildren(strong(String(unnamed), "cast-unnamed-count"),
      ` unnamed trace${unnamed === 1 ? "" : "s"} in `, strong(String(groups), "cast-group-count"),
      ` group${groups === 1 ? "" : "s"}`);
  }

  // Suggestions of every group on the page again: a person just named may now be a confident match.
  function resuggest() {
    summarise(Array.from(body().querySelectorAll(".cast-groups > .cast-group")));
  }

  // ------------------------------------------------------------------ actions

  // ------------------------------------------------------------------ select many, name once

  function selectedPks() {
    return Array.from(body().querySelectorAll(".cast-tile.cast-selected")).map((t) => Number(t.dataset.pk));
  }

  function showSelection() {
    if (!selection) return;
    const pks = selectedPks();
    selection.dataset.pks = pks.join(",");
    selection.querySelector(".cast-selection-count").textContent = `${plural(pks.length, "face")} selected`;
    selection.hidden = !pks.length;
    if (!pks.length) selection.querySelector(".cast-offer").hidden = true;
  }

  function toggleSelected(tile) {
    if (!tile || !canChange || !groupOf(tile) || isSelection(groupOf(tile))) return;
    tile.classList.toggle("cast-selected");
    tile.setAttribute("aria-selected", String(tile.classList.contains("cast-selected")));
    showSelection();
  }

  function clearSelection() {
    for (const tile of root.querySelectorAll(".cast-tile.cast-selected")) {
      tile.classList.remove("cast-selected");
      tile.removeAttribute("aria-selected");
    }
    showSelection();
  }

  // The selected faces were named, bound or hidden together: the groups are drawn again from the server.
  async function selectionDone(data) {
    await refreshBody();
    say(data.message, "ok", true);
    refreshNamed();
  }

  async function hideSelected() {
    const data = await call("hide", { trace_pks: selectedPks() });
    if (!data.success) return failed(data);
    selectionDone(data);
  }

  function groupDone(group, data) {
    if (isSelection(group)) return selectionDone(data);
    const next = group.nextElementSibling && group.nextElementSibling.querySelector(".cast-tile");
    const previous = group.previousElementSibling && group.previousElementSibling.querySelector(".cast-tile");
    recount(-(data.traces || []).length, -1);
    group.remove();
    focusTile(next || previous || firstTile());
    say(data.message, "ok", true);
    refreshNamed();
    resuggest();
  }

  async function nameGroup(group, name, allowDuplicate) {
    group.classList.add("cast-busy");
    const data = await call("name", { trace_pks: pksOf(group), name, allow_duplicate: !!allowDuplicate });
    group.classList.remove("cast-busy");
    if (data.success) return groupDone(group, data);
    if (data.status === 409 && data.error.details && data.error.details.existing) {
      return offer(group, name, data.error.details.existing);
    }
    failed(data);
  }

  async function bindGroup(group, identityUuid) {
    group.classList.add("cast-busy");
    const data = await call("bind", { trace_pks: pksOf(group), identity_uuid: identityUuid });
    group.classList.remove("cast-busy");
    if (data.success) return groupDone(group, data);
    failed(data);
  }

  // The name is taken: merge into that person, or say this is someone else of the same name.
  function offer(group, name, existing) {
    const box = group.querySelector(".cast-offer");
    box.replaceChildren();
    const text = document.createElement("p");
    text.textContent = `“${existing.name}” already exists (${plural(existing.trace_count, "trace")}).`;
    const merge = document.createElement("button");
    merge.type = "button";
    merge.className = "cast-merge";
    merge.dataset.identity = existing.identity_uuid;
    merge.textContent = "Merge into existing";
    const different = document.createElement("button");
    different.type = "button";
    different.className = "cast-different";
    different.dataset.name = name;
    different.textContent = "A different person";
    box.append(text, merge, different);
    box.hidden = false;
    merge.focus();
  }

  // "Not this person": kept on the server (grouping, suggestions and clustering respect it), undoable.
  async function removeFromGroup(tile) {
    const group = groupOf(tile);
    if (!group || !canChange) return;
    const pks = pksOf(group);
    const pk = Number(tile.dataset.pk);
    if (pks.length < 2) {
      say("This face is alone in its group already.");
      return;
    }
    group.classList.add("cast-busy");
    const data = await call("separate", { trace_pk: pk, group_pks: pks });
    group.classList.remove("cast-busy");
    if (!data.success) return failed(data);
    if (!tile.isConnected || groupOf(tile) !== group) return;
    const after = neighbour(tile);
    const fresh = document.getElementById("cast-group-template").content.firstElementChild.cloneNode(true);
    fresh.dataset.key = `${group.dataset.key}-${pk}`;
    group.after(fresh);
    fresh.querySelector(".cast-tiles").appendChild(tile);
    setPks(group, pks.filter((p) => p !== pk));
    setPks(fresh, [pk]);
    focusTile(groupOf(after) === group ? after : group.querySelector(".cast-tile") || tile);
    recount(0, 1);
    say(data.message, "ok", true);
    summarise([group, fresh]);
  }

  async function hideTile(tile) {
    if (!tile || !canChange) return;
    const group = groupOf(tile);
    const pk = Number(tile.dataset.pk);
    const data = await call("hide", { trace_pks: [pk] });
    if (!data.success) return failed(data);
    const after = neighbour(tile);
    tile.remove();
    bumpHidden(data.traces.length);
    let emptied = 0;
    if (group) {
      const pks = pksOf(group).filter((p) => p !== pk);
      if (pks.length) {
        setPks(group, pks);
        summarise([group]);
      } else {
        group.remove();
        emptied = 1;
      }
    }
    recount(-data.traces.length, -emptied);
    focusTile(after && after.isConnected ? after : firstTile());
    say(data.message, "ok", true);
  }

  async function unhideTile(tile) {
    const data = await call("unhide", { trace_pks: [Number(tile.dataset.pk)] });
    if (!data.success) return failed(data);
    await refreshBody(tile.dataset.pk);
    say(data.message, "ok", true);
  }

  async function undo() {
    if (!canChange) return;
    const data = await call("undo", {});
    if (!data.success) return failed(data);
    await refreshBody();
    refreshNamed();
    say(data.message, "ok");
  }

  async function regroup() {
    say("Grouping every unnamed face again…");
    const data = await call("regroup", {});
    if (!data.success) return failed(data);
    await refreshBody();
    say(data.message, "ok");
  }

  async function showMore(button) {
    const data = await call("tiles", { trace_pks: pksOf(button) });
    if (!data.success) return failed(data);
    const group = groupOf(button);
    button.insertAdjacentHTML("beforebegin", data.html);
    button.remove();
    setPks(group, pksOf(group));
    const first = data.tiles.length && group.querySelector(`.cast-tile[data-pk="${data.tiles[0].pk}"]`);
    if (first) focusTile(first);
  }

  function accept(group) {
    const chip = group && group.querySelector(".cast-chip.confident");
    if (chip) bindGroup(group, chip.dataset.identity);
    else say("No confident suggestion for this group: type a name (Enter).");
  }

  // ------------------------------------------------------------------ the clip on hover
  // The face-following crop clip (…/trace/N/video?crop=face&size=…, docs/streaming.md) at the tile's
  // size in device pixels. Until it plays, the tile keeps showing the face with a spinner over it
  // (never a black box); the clips of the tiles in view are rendered ahead (below).

  const timers = new WeakMap();
  const playing = new Set();
  const CLIP_SIZE = (window.devicePixelRatio || 1) >= 1.5 ? 192 : 96;
  const clipUrl = (tile) => `${tile.dataset.clip}${tile.dataset.clip.includes("?") ? "&" : "?"}crop=face&size=${CLIP_SIZE}`;

  function play(tile) {
    if (tile.querySelector("video")) return;
    const video = document.createElement("video");
    video.className = "cast-clip";
    video.muted = true;
    video.loop = true;
    video.playsInline = true;
    video.preload = "auto";
    video.poster = tile.dataset.thumb;
    tile.classList.add("cast-loading");
    const shown = () => {
      tile.classList.remove("cast-loading");
      video.classList.add("cast-playing");
    };
    video.addEventListener("playing", shown, { once: true });
    video.addEventListener("error", () => tile.classList.remove("cast-loading"), { once: true });
    video.src = clipUrl(tile);
    warmed.add(video.src);
    playing.add(tile);
    tile.insertBefore(video, tile.querySelector("img").nextSibling);
    video.play().catch(() => {});
  }

  function stop(tile) {
    clearTimeout(timers.get(tile));
    playing.delete(tile);
    tile.classList.remove("cast-loading");
    const video = tile.querySelector("video");
    if (!video) return;
    video.pause();
    video.removeAttribute("src");
    video.load();
    video.remove();
  }

  // Render ahead: one low-priority 1-byte request per tile in view (the server renders the whole clip
  // into its cache), at most WARM_AT_ONCE at a time from this page, as renders are CPU-bound.
  const WARM_AT_ONCE = 2;
  const warmed = new Set();
  const waiting = new Set();
  let warming = 0;

  function warmNext() {
    while (warming < WARM_AT_ONCE && waiting.size) {
      const tile = waiting.values().next().value;
      waiting.delete(tile);
      const url = new URL(clipUrl(tile), location.href).href;
      if (!tile.isConnected || warmed.has(url)) continue;
      warmed.add(url);
      warming += 1;
      fetch(url, { credentials: "same-origin", headers: { Range: "bytes=0-0" }, priority: "low" })
        .then((response) => {
          if (response.status === 503) warmed.delete(url); // busy: a later view or the hover asks again
          return response.arrayBuffer();
        })
        .catch(() => warmed.delete(url))
        .finally(() => {
          warming -= 1;
          warmNext();
        });
    }
  }

  const inView = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) waiting.add(entry.target);
      else waiting.delete(entry.target);
    }
    warmNext();
  }) : null;

  function watchTiles(container) {
    if (!inView) return;
    if (container.matches && container.matches(".cast-tile")) inView.observe(container);
    for (const tile of container.querySelectorAll ? container.querySelectorAll(".cast-tile") : []) inView.observe(tile);
  }
  watchTiles(root);
  // Tiles added later (more faces, an undo re-rendering the groups) are watched too.
  new MutationObserver((records) => {
    for (const record of records) record.addedNodes.forEach((node) => node.nodeType === 1 && watchTiles(node));
  }).observe(root, { childList: true, subtree: true });

  function soon(tile) {
    clearTimeout(timers.get(tile));
    timers.set(tile, setTimeout(() => tile.isConnected && play(tile), PLAY_DELAY_MS));
  }

  root.addEventListener("mouseover", (event) => {
    const tile = tileOf(event.target);
    if (tile && !tile.contains(event.relatedTarget)) soon(tile);
  });
  root.addEventListener("mouseout", (event) => {
    const tile = tileOf(event.target);
    if (tile && !tile.contains(event.relatedTarget) && tile !== document.activeElement) stop(tile);
  });
  // The pointer over anything else stops a clip even if its tile missed its mouseout (its content
  // changed under a still pointer).
  document.addEventListener("mouseover", (event) => {
    for (const tile of playing) {
      if (!tile.contains(event.target) && tile !== document.activeElement) stop(tile);
    }
  });
  root.addEventListener("focusin", (event) => {
    if (event.target.classList && event.target.classList.contains("cast-tile")) soon(event.target);
  });
  root.addEventListener("focusout", (event) => {
    const tile = event.target.classList && event.target.classList.contains("cast-tile") ? event.target : null;
    if (tile && !tile.matches(":hover")) stop(tile);
  });

  // ------------------------------------------------------------------ clicks

  root.addEventListener("click", (event) => {
    const target = event.target;
    const tile = tileOf(target);
    if (target.closest(".cast-remove")) return removeFromGroup(tile);
    if (target.closest(".cast-hide")) return hideTile(tile);
    if (target.closest(".cast-unhide")) return unhideTile(tile);
    if (target.closest(".cast-play")) return; // the link opens the file's player
    if (tile && (event.ctrlKey || event.metaKey || event.shiftKey)) return toggleSelected(tile);
    if (target.closest(".cast-selection-hide")) return hideSelected();
    if (target.closest(".cast-selection-clear")) return clearSelection();
    if (tile) {
      focusTile(tile);
      return play(tile);
    }
    const chip = target.closest(".cast-chip");
    if (chip) return bindGroup(groupOf(chip), chip.dataset.identity);
    const merge = target.closest(".cast-merge");
    if (merge) return bindGroup(groupOf(merge), merge.dataset.identity);
    const different = target.closest(".cast-different");
    if (different) return nameGroup(groupOf(different), different.dataset.name, true);
    if (target.closest(".cast-more")) return showMore(target.closest(".cast-more"));
    if (target.closest(".cast-undo")) return undo();
    if (target.closest(".cast-regroup")) return regroup();
    const option = target.closest(".cast-options li");
    if (option) return bindGroup(groupOf(option), option.dataset.identity);
  });

  const fileSelect = document.getElementById("cast-file");
  if (fileSelect) {
    fileSelect.addEventListener("change", () => {
      window.location.href = root.dataset.castUrl + (fileSelect.value ? `${fileSelect.value}/` : "");
    });
  }

  // ------------------------------------------------------------------ the name box and its autocomplete

  const lookups = new WeakMap();

  function options(input) {
    return input.closest(".cast-name").querySelector(".cast-options");
  }

  // Closing the list also drops a lookup still on its way: it must not reopen the list later.
  const generations = new WeakMap();

  function closeOptions(input) {
    clearTimeout(lookups.get(input));
    generations.set(input, (generations.get(input) || 0) + 1);
    const list = options(input);
    list.hidden = true;
    list.replaceChildren();
    input.setAttribute("aria-expanded", "false");
  }

  async function lookup(input) {
    const term = input.value.trim();
    if (!term) return closeOptions(input);
    const generation = generations.get(input) || 0;
    const data = await call(`people?q=${encodeURIComponent(term)}`, null, "GET");
    if (!data.success || input.value.trim() !== term || generation !== (generations.get(input) || 0)) return;
    const list = options(input);
    list.replaceChildren();
    for (const person of data.results) {
      const item = document.createElement("li");
      item.setAttribute("role", "option");
      item.dataset.identity = person.identity_uuid;
      if (person.face_url) {
        const img = document.createElement("img");
        img.src = person.face_url;
        img.alt = "";
        item.appendChild(img);
      }
      const name = document.createElement("span");
      name.textContent = person.name;
      const count = document.createElement("small");
      count.textContent = plural(person.trace_count, "trace");
      item.append(name, count);
      list.appendChild(item);
    }
    list.hidden = !data.results.length;
    input.setAttribute("aria-expanded", String(!list.hidden));
  }

  function moveOption(input, step) {
    const items = Array.from(options(input).querySelectorAll("li"));
    if (!items.length) return;
    const at = items.findIndex((li) => li.getAttribute("aria-selected") === "true");
    const next = items[(at + step + items.length) % items.length];
    items.forEach((li) => li.setAttribute("aria-selected", String(li === next)));
    next.scrollIntoView({ block: "nearest" });
  }

  root.addEventListener("input", (event) => {
    const input = event.target;
    if (!input.matches(".cast-name input")) return;
    clearTimeout(lookups.get(input));
    lookups.set(input, setTimeout(() => lookup(input), 120));
  });

  root.addEventListener("submit", (event) => {
    const form = event.target.closest(".cast-name, .cast-selection");
    if (!form) return;
    event.preventDefault();
    const input = form.querySelector("input");
    const chosen = options(input).querySelector('li[aria-selected="true"]');
    const group = groupOf(form);
    closeOptions(input);
    if (chosen) return bindGroup(group, chosen.dataset.identity);
    if (input.value.trim()) nameGroup(group, input.value.trim(), false);
  });

  root.addEventListener("keydown", (event) => {
    const input = event.target;
    if (!input.matches || !input.matches(".cast-name input")) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      moveOption(input, event.key === "ArrowDown" ? 1 : -1);
    } else if (event.key === "Escape") {
      event.preventDefault();
      if (!options(input).hidden) return closeOptions(input);
      focusTile(groupOf(input).querySelector(".cast-tile"));
    }
  });

  // ------------------------------------------------------------------ the keyboard on the grid

  function below(tile, down) {
    const here = tile.getBoundingClientRect();
    const centre = here.left + here.width / 2;
    let best = null;
    let bestRow = Infinity;
    let bestDx = Infinity;
    for (const other of allTiles()) {
      const r = other.getBoundingClientRect();
      const dy = down ? r.top - here.bottom : here.top - r.bottom;
      if (dy < -2) continue;
      const row = Math.round(dy / 8);
      const dx = Math.abs(r.left + r.width / 2 - centre);
      if (row < bestRow || (row === bestRow && dx < bestDx)) {
        best = other;
        bestRow = row;
        bestDx = dx;
      }
    }
    return best;
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.matches && target.matches("input, textarea, select, [contenteditable]")) return;
    const tile = tileOf(document.activeElement);
    const tiles = allTiles();
    let handled = true;
    switch (event.key) {
      case "ArrowRight":
      case "ArrowLeft": {
        const at = tile ? tiles.indexOf(tile) : -1;
        const step = event.key === "ArrowRight" ? 1 : -1;
        focusTile(tile ? tiles[at + step] || tile : tiles[0]);
        break;
      }
      case "ArrowDown":
      case "ArrowUp":
        focusTile(tile ? below(tile, event.key === "ArrowDown") || tile : tiles[0]);
        break;
      case "Enter": {
        const input = tile && groupOf(tile) && groupOf(tile).querySelector(".cast-name input");
        if (input) input.focus();
        else handled = false;
        break;
      }
      case "x":
        if (tile) removeFromGroup(tile);
        break;
      case "h":
        if (tile && groupOf(tile)) hideTile(tile);
        break;
      case "a":
        if (tile) accept(groupOf(tile));
        break;
      case "u":
        undo();
        break;
      case " ":
        if (tile) toggleSelected(tile);
        break;
      case "Escape":
        if (selectedPks().length) clearSelection();
        else handled = false;
        break;
      default:
        handled = false;
    }
    if (handled) event.preventDefault();
  });

  const start = firstTile();
  if (start) start.tabIndex = 0;
  root.dataset.ready = "1";
})();
