// nodetrace pages: links the diagram, the trace trees and the log summary.
// Reads its data from the JSON block; writes only with DOM APIs and textContent.
(function () {
  "use strict";
  var dataBlock = document.getElementById("nodetrace-data");
  var data = dataBlock ? JSON.parse(dataBlock.textContent) : {};
  var paths = data.paths || [];
  var svg = document.querySelector(".diagram-pane svg");

  function all(selector, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(selector));
  }
  function clearSelection() {
    all(".selected, .in-hop").forEach(function (el) { el.classList.remove("selected", "in-hop"); });
  }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }
  function hopOf(pathIndex, hopIndex) {
    var path = paths[pathIndex];
    if (!path) return null;
    for (var i = 0; i < path.hops.length; i++) {
      if (path.hops[i].index === hopIndex) return path.hops[i];
    }
    return null;
  }
  function stepsOf(pathIndex, hopIndex) {
    return all('li.step[data-path="' + pathIndex + '"][data-hop="' + hopIndex + '"]');
  }
  function reveal(step) {
    var more = step.querySelector(".more");
    if (more) more.hidden = false;
  }
  function factText(step, names) {
    for (var i = 0; i < names.length; i++) {
      var code = step.querySelector("code.fact-" + names[i]);
      if (code) return code.textContent;
    }
    return "";
  }

  // --- the selected hop: its node, its steps in the tree, its rules and flows --------------
  function showHopDetail(pathIndex, hop, steps) {
    var box = document.getElementById("hop-detail");
    if (!box) return;
    box.hidden = false;
    var label = (paths[pathIndex].observed ? "observed " : "") + "hop " + hop.index + ": " + hop.device +
      (hop.netns ? " (namespace " + hop.netns + ")" : "") + " · " + hop.state + " · " +
      steps.length + " step" + (steps.length === 1 ? "" : "s");
    box.appendChild(el("h4", label));
    // the deciding step first: it is what a reader of a dropped packet looks for
    var ordered = steps.filter(function (s) { return s.classList.contains("decided"); })
      .concat(steps.filter(function (s) { return !s.classList.contains("decided"); }));
    ordered.forEach(function (step) {
      var where = step.querySelector(".where");
      var decided = step.classList.contains("decided");
      var head = el("div", step.dataset.step + "  " + (where ? where.textContent : "") +
        (decided ? "  ◀ decided here" : ""), "mono step-head");
      if (decided) head.classList.add("decided-step");
      if (decided && step.classList.contains("dropped")) head.classList.add("dropped");
      box.appendChild(head);
      var rule = factText(step, ["rule", "flow", "meaning", "detail"]);
      if (rule) box.appendChild(el("pre", rule, "rule-text"));
      var source = factText(step, ["read-from"]);
      if (source) box.appendChild(el("div", "read from " + source, "note"));
    });
  }

  // From the diagram: the hop's steps are selected and scrolled to, its rules shown above.
  // From a step: that step opens, its hop is selected in the diagram.
  function selectHop(pathIndex, hopIndex, fromStep, keep) {
    var hop = hopOf(pathIndex, hopIndex);
    if (!hop) return;
    if (!keep) clearSelection();
    var node = hop.element ? document.getElementById(hop.element) : null;
    if (node) node.classList.add("selected");
    var steps = stepsOf(pathIndex, hopIndex);
    steps.forEach(function (step) { step.classList.add(fromStep ? "in-hop" : "selected"); });
    if (fromStep) {
      fromStep.classList.add("selected");
      if (node) node.scrollIntoView({ block: "nearest", inline: "nearest" });
      return;
    }
    showHopDetail(pathIndex, hop, steps);
    var decided = steps.filter(function (s) { return s.classList.contains("decided"); })[0];
    var target = decided || steps[0];
    if (target && !keep) target.scrollIntoView({ block: "center" });
  }
  var hopElements = {};
  function indexHopElements() {
    hopElements = {};
    Object.keys(paths).forEach(function (key) {
      paths[key].hops.forEach(function (hop) { if (hop.element) hopElements[hop.element] = true; });
    });
  }
  indexHopElements();

  // --- log: one packet's path at a time on the node's diagram -------------------------------
  var packetPaths = data.packetPaths || {};
  function drawPacket(index) {
    var path = packetPaths[index];
    if (!svg || !path) return;
    all("g.hop, g.edge.path", svg).forEach(function (node) {
      node.classList.remove("hop", "hop-passed", "hop-decided", "hop-dropped", "hop-unknown",
        "observed", "path");
    });
    paths = {};
    paths[index] = path;
    indexHopElements();
    var previous = null;
    path.hops.forEach(function (hop) {
      var node = hop.element ? document.getElementById(hop.element) : null;
      if (!node) { previous = null; return; }
      node.classList.add("hop", "hop-" + hop.state, "observed");
      if (previous && previous !== hop.element) {
        all('g.edge[data-from="' + previous + '"][data-to="' + hop.element + '"], ' +
            'g.edge[data-from="' + hop.element + '"][data-to="' + previous + '"]', svg)
          .forEach(function (edge) { edge.classList.add("path", "observed"); });
      }
      previous = hop.element;
    });
    all("button.draw-path.drawn").forEach(function (b) { b.classList.remove("drawn"); });
    var button = document.querySelector('button.draw-path[data-draw="' + index + '"]');
    if (button) button.classList.add("drawn");
  }
  all("button.draw-path").forEach(function (button) {
    button.addEventListener("click", function () {
      drawPacket(button.dataset.draw);
      svg.scrollIntoView({ block: "nearest" });
    });
  });
  if (svg) {
    svg.addEventListener("click", function (event) {
      if (!event.target.closest) return;
      // The drawn element of a hop: a device, or the folded group holding it on a large node.
      var node = null;
      for (var up = event.target.closest("g[id]"); up && up !== svg; up = up.parentNode.closest("g[id]")) {
        if (hopElements[up.id]) { node = up; break; }
      }
      node = node || event.target.closest("g.node");
      if (!node) return;
      // A device on both paths (or crossed twice) is every one of those hops.
      var box = document.getElementById("hop-detail");
      if (box) box.replaceChildren();
      var found = 0;
      Object.keys(paths).forEach(function (p) {
        var hops = paths[p].hops;
        for (var i = 0; i < hops.length; i++) {
          if (hops[i].element === node.id) { selectHop(p, hops[i].index, null, found > 0); found++; }
        }
      });
      if (found) return;
      clearSelection();
      node.classList.add("selected");
      var item = document.querySelector('.inventory li.item[data-element="' + node.id + '"]');
      if (item) { item.classList.add("selected"); item.scrollIntoView({ block: "center" }); }
    });
  }
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.closest || target.closest(".more") || target.closest("a")) return;
    var step = target.closest("li.step");
    if (step) {
      var more = step.querySelector(".more");
      var opening = more && more.hidden;
      if (more) more.hidden = !opening;
      if (step.dataset.hop) {
        if (!paths[step.dataset.path]) drawPacket(step.dataset.path);
        selectHop(step.dataset.path, Number(step.dataset.hop), step);
      } else {
        clearSelection();
        step.classList.add("selected");
      }
      return;
    }
    var item = target.closest(".inventory li.item");
    if (item && item.dataset.element) {
      clearSelection();
      item.classList.add("selected");
      var node = document.getElementById(item.dataset.element);
      if (node) { node.classList.add("selected"); node.scrollIntoView({ block: "center", inline: "center" }); }
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && event.target.matches && event.target.matches("li.step")) {
      event.target.click();
    }
  });

  // --- search: highlight what matches, dim the rest ----------------------------------------
  var search = document.getElementById("search");
  var searchCount = document.getElementById("search-count");
  function runSearch() {
    var query = search.value.trim().toLowerCase();
    var words = query ? query.split(/\s+/) : [];
    var found = 0;
    // Whole words first (10.0.0.3 is not 10.0.0.35); when nothing has them, parts of words
    // (a port id's first characters, part of a name).
    function wholeWords(text) {
      var have = (text || "").toLowerCase().split(/\s+/);
      return words.every(function (w) { return have.indexOf(w) >= 0; });
    }
    function partWords(text) {
      text = (text || "").toLowerCase();
      return words.every(function (w) { return text.indexOf(w) >= 0; });
    }
    var texts = all("g.node, g.group[data-search], g.cluster[data-search], .inventory li.item")
      .map(function (el) { return (el.dataset.search || "") + " " + (el.dataset.device || ""); });
    var matches = texts.some(wholeWords) ? wholeWords : partWords;
    if (svg) {
      svg.classList.toggle("searching", words.length > 0);
      var hits = {};
      // devices, and on a large node the folded groups (their search words are their devices')
      var drawn = all("g.node, g.group[data-search]", svg);
      drawn.forEach(function (node) {
        if (words.length > 0 && matches(node.dataset.search + " " + (node.dataset.device || ""))) hits[node.id] = node;
      });
      // A region that matches (a Neutron port with its addresses and MAC, a namespace) lights
      // the devices drawn inside it.
      all("g.cluster[data-search]", svg).forEach(function (cluster) {
        var hit = words.length > 0 && matches(cluster.dataset.search);
        cluster.classList.toggle("match", hit);
        if (!hit) return;
        var area = cluster.getBBox();
        drawn.forEach(function (node) {
          var box = node.getBBox();
          if (box.x >= area.x && box.y >= area.y && box.x + box.width <= area.x + area.width &&
              box.y + box.height <= area.y + area.height) hits[node.id] = node;
        });
      });
      drawn.forEach(function (node) { node.classList.toggle("match", !!hits[node.id]); });
      found = Object.keys(hits).length;
    }
    all(".inventory li.item").forEach(function (item) {
      var hit = words.length > 0 && matches(item.dataset.search);
      item.classList.toggle("match", hit);
    });
    if (searchCount) searchCount.textContent = words.length ? found + " match" + (found === 1 ? "" : "es") : "";
    if (words.length && svg) {
      var first = svg.querySelector("g.node.match, g.group.match");
      if (first) first.scrollIntoView({ block: "center", inline: "center" });
    }
  }
  if (search) search.addEventListener("input", runSearch);

  // --- filter by kind, collapse namespaces ---------------------------------------------------
  function applyFilters() {
    if (!svg) return;
    var hidden = {};
    all("input.kind-filter").forEach(function (box) { if (!box.checked) hidden[box.dataset.kind] = true; });
    var gone = {};
    all("g.node", svg).forEach(function (node) {
      var off = false;
      node.classList.forEach(function (c) { if (hidden[c]) off = true; });
      off = off && !node.classList.contains("hop");
      node.classList.toggle("filtered", off);
      if (off) gone[node.id] = true;
    });
    // Collapsed namespaces keep their region and heading; only the path's hops stay inside.
    var collapse = document.getElementById("collapse-netns");
    if (collapse && collapse.checked) {
      all("g.node:not(.hop)", svg).forEach(function (node) {
        if (node.dataset.netns) { node.classList.add("filtered"); gone[node.id] = true; }
      });
    }
    all("g.edge", svg).forEach(function (edge) {
      edge.classList.toggle("filtered", !!(gone[edge.dataset.from] || gone[edge.dataset.to]));
    });
  }
  all("input.kind-filter, #collapse-netns").forEach(function (box) { box.addEventListener("change", applyFilters); });

  // --- zoom ------------------------------------------------------------------------------------
  var scale = 1;
  var base = null;
  function zoom(factor) {
    if (!svg) return;
    if (!base) {
      var box = svg.viewBox && svg.viewBox.baseVal;
      base = box && box.width ? { w: box.width, h: box.height } : { w: svg.clientWidth, h: svg.clientHeight };
    }
    var pane = svg.parentNode;
    if (factor === 0) {
      scale = Math.min(1, (pane.clientWidth - 8) / base.w, (pane.clientHeight - 8) / base.h);
    } else if (factor === -1) {  // the width of the pane, while the text stays readable
      scale = Math.max(MIN_READABLE, Math.min(1, (pane.clientWidth - 8) / base.w));
    } else {
      scale = Math.max(0.05, Math.min(8, scale * factor));
    }
    svg.setAttribute("width", String(Math.round(base.w * scale)));
    svg.setAttribute("height", String(Math.round(base.h * scale)));
  }
  var zoomButtons = { "zoom-in": 1.25, "zoom-out": 0.8, "zoom-fit": 0 };
  Object.keys(zoomButtons).forEach(function (id) {
    var button = document.getElementById(id);
    if (button) button.addEventListener("click", function () { zoom(zoomButtons[id]); });
  });
  var MIN_READABLE = 0.6;
  if (svg) zoom(data.fit ? 0 : -1);
  // Open on the path: the deciding (or last) hop in view.
  var firstPath = paths[0];
  if (svg && firstPath && firstPath.hops.length) {
    var shown = firstPath.hops.filter(function (h) { return h.state !== "passed" && h.element; })[0] ||
      firstPath.hops.filter(function (h) { return h.element; }).slice(-1)[0];
    var shownNode = shown ? document.getElementById(shown.element) : null;
    if (shownNode) shownNode.scrollIntoView({ block: "nearest", inline: "center" });
  }

  // --- log: the packets behind a bar, the timeline ------------------------------------------
  var barPackets = document.getElementById("bar-packets");
  function listPackets(title, indexes) {
    if (!barPackets) return;
    barPackets.replaceChildren();
    barPackets.hidden = false;
    barPackets.appendChild(el("h4", title + ": " + indexes.length + " packet" + (indexes.length === 1 ? "" : "s")));
    var list = el("div");
    indexes.forEach(function (n) {
      var link = el("a", "packet " + n, "packet-link");
      if (document.getElementById("packet-" + n)) link.href = "#packet-" + n;
      list.appendChild(link);
    });
    if (!indexes.length) list.appendChild(el("span", "(none shown)", "note"));
    barPackets.appendChild(list);
    barPackets.scrollIntoView({ block: "nearest" });
  }
  all(".bars g.bar").forEach(function (bar) {
    bar.addEventListener("click", function () {
      all(".bars g.bar.selected").forEach(function (b) { b.classList.remove("selected"); });
      bar.classList.add("selected");
      var packets = (data.bars && data.bars[bar.dataset.bar]) || [];
      listPackets(bar.dataset.label, packets);
    });
  });
  all(".timeline circle[data-packet]").forEach(function (dot) {
    dot.addEventListener("click", function () {
      var target = document.getElementById("packet-" + dot.dataset.packet);
      if (target) {
        target.scrollIntoView({ block: "start" });
        target.classList.add("flash");
        setTimeout(function () { target.classList.remove("flash"); }, 1200);
      }
    });
  });

  document.documentElement.dataset.ready = "1";
})();
