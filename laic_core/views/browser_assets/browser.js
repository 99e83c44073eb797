/* The cluster browser's pages: index.html (every cluster as a card) and cluster.html (one cluster's
   members, page by page). Static: the data are JavaScript files under data/ that call LAIC.put(key,
   value), loaded with <script> elements, which a page opened from file:// may do (fetch() may not).
   Nothing is written into the page as HTML: every name and path goes in as text. */
"use strict";

var LAIC = (function () {
  var store = {};
  var pending = {};

  function put(key, value) {
    store[key] = value;
  }

  /* A promise of store[key], loading the script at `path` once. */
  function load(key, path) {
    if (store[key] !== undefined) return Promise.resolve(store[key]);
    if (!pending[key]) {
      pending[key] = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = path;
        script.charset = "utf-8";
        script.onload = function () {
          if (store[key] !== undefined) resolve(store[key]);
          else reject(new Error(path + " holds no " + key));
        };
        script.onerror = function () { reject(new Error("cannot read " + path)); };
        document.head.appendChild(script);
      });
    }
    return pending[key];
  }

  function clusters(method) {
    return load("clusters/" + method, "data/clusters/" + method + ".js");
  }

  function members(method, id) {
    return load("members/" + method + "/" + id, "data/members/" + method + "/" + id + ".js");
  }

  /* Everything the pages know of one image, once its chunk is loaded. */
  function rowInfo(row) {
    var run = store.run;
    var chunk = store["rows/" + Math.floor(row / run.rows_per_chunk)];
    var i = row % run.rows_per_chunk;
    var folder = chunk.folders[chunk.folder[i]];
    var file = chunk.file[i];
    return {
      row: row,
      file: file,
      source: folder[0] ? folder[0] + "/" + file : file,
      href: folder[1] === null ? null : folder[1] + encodeURIComponent(file),
      thumb: chunk.thumb.charAt(i) === "1",
      cls: chunk["class"] ? chunk["class"][i] : -1,
      cluster: function (method) { return chunk.cluster[method][i]; }
    };
  }

  function loadRows(rows) {
    var size = store.run.rows_per_chunk;
    var chunks = {};
    rows.forEach(function (row) { chunks[Math.floor(row / size)] = true; });
    return Promise.all(Object.keys(chunks).map(function (c) {
      return load("rows/" + c, "data/rows/" + c + ".js");
    }));
  }

  // ---------------------------------------------------------------- small helpers

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, String(value));
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function params() {
    var out = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var at = part.indexOf("=");
      if (at > 0) out[part.slice(0, at)] = decodeURIComponent(part.slice(at + 1));
    });
    return out;
  }

  function hash(values) {
    return "#" + Object.keys(values).filter(function (k) {
      return values[k] !== "" && values[k] !== null && values[k] !== undefined;
    }).map(function (k) { return k + "=" + encodeURIComponent(values[k]); }).join("&");
  }

  function method(name) {
    var methods = store.run.methods;
    for (var i = 0; i < methods.length; i++) if (methods[i].name === name) return methods[i];
    return null;
  }

  function fillSelect(select, options, value) {
    select.textContent = "";
    options.forEach(function (option) {
      select.appendChild(el("option", {value: option[0], text: option[1], selected: option[0] === value}));
    });
    select.value = value;
  }

  function methodOptions() {
    return store.run.methods.map(function (m) { return [m.name, m.title]; });
  }

  // Both pages: the method shown and the one compared with it (any other method, or none).
  function fillMethodSelects(s) {
    fillSelect($("method"), methodOptions(), s.m);
    fillSelect($("compare"), [["", "(none)"]].concat(methodOptions().filter(function (o) {
      return o[0] !== s.m;
    })), s.c);
  }

  function fail(error) {
    var box = el("p", {class: "error", text: "The browser could not show this page: " + error.message});
    document.body.insertBefore(box, document.body.firstChild);
    console.error(error.message);
  }

  function percent(part, whole) {
    return whole ? Math.round(100 * part / whole) + "%" : "";
  }

  /* A member's score comes in hundredths (null: none), a card's mean as it is. */
  function score(value, hundredths) {
    if (value === null || value === undefined) return "\u2013";
    return (hundredths ? value / 100 : value).toFixed(2);
  }

  function className(id) {
    var names = store.run.class_names;
    return names && id >= 0 && id < names.length ? names[id] : "class " + id;
  }

  function clusterLabel(methodName, id) {
    var recs = store["clusters/" + methodName];
    if (recs) {
      for (var i = 0; i < recs.length; i++) {
        if (String(recs[i].id) === String(id)) return recs[i].name ? id + " " + recs[i].name : String(id);
      }
    }
    return String(id);
  }

  function thumbnail(row, alt) {
    var run = store.run;
    var image = el("img", {
      src: "thumbs/" + Math.floor(row / run.thumbs_per_folder) + "/" + row + ".jpg",
      alt: alt, width: run.thumbnail_px, height: run.thumbnail_px, loading: "lazy"
    });
    image.onerror = function () { console.error("missing thumbnail " + image.getAttribute("src")); };
    return image;
  }

  function clusterHref(methodName, id, compare) {
    return "cluster.html" + hash({m: methodName, k: id, c: compare});
  }

  // ---------------------------------------------------------------- the lines to paste

  /* Every line names the run it was written for (the fingerprint of the method's partition), so that
     a later run with other clusters carries it to the right cluster or sets it aside. */
  function runTail(methodName) {
    var info = method(methodName);
    return info && info.run ? ", run: " + info.run + "}" : "}";
  }

  function renameLine(methodName, id, name) {
    return "- {method: " + methodName + ", rename: " + id + ", to: " + JSON.stringify(name) + runTail(methodName);
  }

  function mergeLine(methodName, ids) {
    return "- {method: " + methodName + ", merge: [" + ids.join(", ") + "]" + runTail(methodName);
  }

  function junkLine(methodName, id) {
    return "- {method: " + methodName + ", junk: " + id + runTail(methodName);
  }

  /* The overview's notice: the lines of clusters.yaml written for other clusters than this run's,
     carried to this run's clusters or set aside. */
  function movedNotice() {
    var moved = store.run.moved || [];
    var box = $("moved");
    if (!box || !moved.length) return;
    var carried = moved.filter(function (o) { return o.status === "carried"; });
    var aside = moved.filter(function (o) { return o.status !== "carried"; });
    var head = [];
    if (carried.length) head.push(carried.length + (carried.length === 1 ? " line" : " lines") + " carried to this run's clusters");
    if (aside.length) head.push(aside.length + (aside.length === 1 ? " line" : " lines") + " set aside (not applied)");
    box.textContent = "";
    box.appendChild(el("h2", {}, [el("code", {text: "clusters.yaml"}), ": " + head.join(", ")]));
    box.appendChild(el("p", {class: "muted", text: "These lines were written for other clusters than this run's " +
      "(the seed, K, the images or a setting changed since). A line is carried to the cluster that holds most " +
      "of its cluster's images when that cluster is mostly those images; otherwise it is set aside, and you " +
      "decide where it belongs."}));
    function item(o) {
      var node = el("li", {class: o.status === "carried" ? "carried" : "aside"}, [
        el("span", {class: "where", text: o.where + " "}), el("code", {text: o.line}), " ",
        el("strong", {text: o.status === "carried" ? "carried" : "set aside"}), o.detail ? ": " + o.detail : ""
      ]);
      if (o.rewrite) {
        node.appendChild(el("br"));
        node.appendChild(el("span", {class: "muted", text: "for this run: "}));
        node.appendChild(el("code", {class: "paste", title: "paste this in place of the old line", text: o.rewrite}));
      }
      return node;
    }
    // the lines set aside need a person: always shown; many carried lines fold away
    if (aside.length) box.appendChild(el("ul", {class: "aside-list"}, aside.map(item)));
    if (carried.length) {
      var list = el("ul", {class: "carried-list"}, carried.map(item));
      var rewrites = carried.filter(function (o) { return o.rewrite; }).map(function (o) { return o.rewrite; });
      var all = rewrites.length > 1 ? el("div", {class: "rewrites"}, [
        el("span", {class: "muted", text: "the carried lines written for this run, to paste in place of theirs:"}),
        el("pre", {class: "paste", text: rewrites.join("\n")})]) : null;
      if (carried.length > 3) {
        box.appendChild(el("details", {}, [el("summary", {text: "the " + carried.length + " lines carried"}), list, all]));
      } else {
        box.appendChild(list);
        if (all) box.appendChild(all);
      }
    }
    box.hidden = false;
  }

  /* Rename (and, on a cluster page, merge) a cluster: the line for clusters.yaml follows the inputs. */
  function fixBlock(methodName, rec, onPick, picked) {
    var line = el("code", {class: "paste", title: "paste this line into clusters.yaml",
                           text: renameLine(methodName, rec.id, rec.name || "")});
    var name = el("input", {class: "rename", type: "text", value: rec.name || "", "aria-label": "new name",
                            placeholder: "new name"});
    name.addEventListener("input", function () { line.textContent = renameLine(methodName, rec.id, name.value); });
    var junk = el("button", {type: "button", class: "junk", text: "junk"});
    junk.addEventListener("click", function () { line.textContent = junkLine(methodName, rec.id); });
    var parts = [el("span", {class: "muted", text: "rename "}), name, " "];
    if (onPick) {
      var pick = el("input", {type: "checkbox", class: "pick", "aria-label": "merge", checked: picked});
      pick.addEventListener("change", function () { onPick(rec.id, pick.checked); });
      parts.push(el("label", {}, [pick, " merge"]), " ");
    } else {
      var others = el("input", {class: "merge-ids", type: "text", placeholder: "ids, e.g. 4 7",
                                "aria-label": "clusters to merge into this one"});
      others.addEventListener("input", function () {
        var ids = others.value.split(/[\s,]+/).filter(function (s) { return /^\d+$/.test(s); });
        line.textContent = ids.length ? mergeLine(methodName, [rec.id].concat(ids))
          : renameLine(methodName, rec.id, name.value);
      });
      parts.push(el("span", {class: "muted", text: "merge in "}), others, " ");
    }
    parts.push(junk, el("br"), line);
    return el("div", {class: "fix"}, parts);
  }

  // ---------------------------------------------------------------- what a cluster is made of

  function classMix(rec) {
    if (!rec.classes || !rec.labelled) return null;
    var bar = el("div", {class: "mixbar"});
    var words = [];
    var shown = 0;
    rec.classes.forEach(function (pair, i) {
      shown += pair[1];
      bar.appendChild(el("span", {class: "c" + i, style: "width:" + (100 * pair[1] / rec.labelled) + "%",
                                  title: className(pair[0]) + ": " + pair[1]}));
      words.push(className(pair[0]) + " " + percent(pair[1], rec.labelled));
    });
    if (shown < rec.labelled) words.push("other " + percent(rec.labelled - shown, rec.labelled));
    return el("div", {class: "mix"}, [bar, el("div", {class: "mixtext", text: words.join(" \u00b7 ")})]);
  }

  function overlap(rec, other) {
    if (!other || !rec.overlap || !rec.overlap[other] || !rec.size) return null;
    var info = method(other);
    var parts = rec.overlap[other].map(function (pair) {
      return percent(pair[1], rec.size) + " in " + clusterLabel(other, pair[0]);
    });
    return el("div", {class: "overlap", text: "in " + (info ? info.title : other) + ": " + parts.join(", ")});
  }

  // Runner-up nouns: on a card one line, each noun's WordNet gloss as its tooltip; on a cluster page
  // one line per noun with its gloss.
  function alsoLine(rec) {
    var glosses = rec.runner_up_glosses || [];
    var parts = ["also: "];
    rec.runner_ups.forEach(function (noun, i) {
      if (i) parts.push(", ");
      parts.push(glosses[i] ? el("span", {class: "glossed", title: glosses[i], text: noun}) : noun);
    });
    return el("div", {class: "also"}, parts);
  }

  function alsoList(rec) {
    var glosses = rec.runner_up_glosses || [];
    return el("div", {class: "also"}, ["also:"].concat(rec.runner_ups.map(function (noun, i) {
      return el("div", {class: "also-noun"}, [el("b", {text: noun})].concat(glosses[i] ? [" \u2013 " + glosses[i]] : []));
    })));
  }

  function describe(rec, info) {
    var bits = [rec.size + (rec.size === 1 ? " image" : " images")];
    if (rec.mean_score !== null && rec.mean_score !== undefined) bits.push("mean " + info.score + " " + score(rec.mean_score));
    if (rec.change) bits.push(rec.change);
    return bits.join(" \u00b7 ");
  }

  // ---------------------------------------------------------------- index.html

  function overview() {
    var run = store.run;
    var picked = [];
    document.title = run.title;
    $("title").textContent = run.title;

    function state() {
      var p = params();
      var m = method(p.m) ? p.m : run.methods[0].name;
      return {m: m, c: method(p.c) && p.c !== m ? p.c : "", sort: p.sort || "size", q: p.q || ""};
    }

    function go(change) {
      var s = state();
      Object.keys(change).forEach(function (k) { s[k] = change[k]; });
      location.replace(hash(s));
    }

    $("method").addEventListener("change", function () { picked = []; go({m: $("method").value}); });
    $("compare").addEventListener("change", function () { go({c: $("compare").value}); });
    $("sort").addEventListener("change", function () { go({sort: $("sort").value}); });
    $("filter").addEventListener("input", function () { go({q: $("filter").value}); });
    $("merge-clear").addEventListener("click", function () {
      picked = [];
      Array.prototype.forEach.call(document.querySelectorAll("input.pick"), function (b) { b.checked = false; });
      showMerge(state().m);
    });

    function showMerge(m) {
      $("merge").hidden = picked.length < 2;
      $("merge-line").textContent = picked.length >= 2 ? mergeLine(m, picked) : "";
    }

    function render() {
      var s = state();
      fillMethodSelects(s);
      $("sort").value = s.sort;
      if ($("filter").value !== s.q) $("filter").value = s.q;
      var wanted = [clusters(s.m)];
      if (s.c) wanted.push(clusters(s.c));
      Promise.all(wanted).then(function (loaded) { draw(s, loaded[0]); }).catch(fail);
    }

    function draw(s, recs) {
      var info = method(s.m);
      var q = s.q.toLowerCase();
      var shown = recs.filter(function (rec) {
        if (!q) return true;
        return [rec.name].concat(rec.runner_ups || []).join(" ").toLowerCase().indexOf(q) >= 0;
      });
      var key = {
        size: function (r) { return -r.size; },
        score: function (r) { return r.mean_score === null ? 1 : -r.mean_score; },
        id: function (r) { return r.id === "junk" ? 1e9 : r.id; }
      }[s.sort] || function (r) { return -r.size; };
      shown.sort(function (a, b) {
        var junkA = a.id === "junk" ? 1 : 0, junkB = b.id === "junk" ? 1 : 0;
        return junkA - junkB || key(a) - key(b) || (a.id === "junk" ? 0 : a.id) - (b.id === "junk" ? 0 : b.id);
      });
      var cards = $("cards");
      cards.textContent = "";
      shown.forEach(function (rec) { cards.appendChild(card(s, info, rec)); });
      $("count").textContent = shown.length + " of " + recs.length + " clusters";
      picked = picked.filter(function (id) { return recs.some(function (r) { return r.id === id; }); });
      showMerge(s.m);
    }

    function card(s, info, rec) {
      var junk = rec.id === "junk";
      var href = clusterHref(s.m, rec.id, s.c);
      var name = el("span", {class: "name" + (rec.name ? "" : " unnamed"), text: rec.name || (rec.size ? "(unnamed)" : "(empty)")});
      var strip = el("div", {class: "strip"}, rec.strip.map(function (row) {
        return el("a", {href: href}, [thumbnail(row, rec.name)]);
      }));
      var children = [
        el("h2", {}, [el("a", {class: "title", href: href}, [el("span", {class: "cid", text: junk ? "\u2013" : String(rec.id)}), " ", name])]),
        rec.gloss ? el("div", {class: "gloss", text: rec.gloss}) : null,
        el("div", {class: "meta", text: describe(rec, info)}),
        rec.runner_ups && rec.runner_ups.length ? alsoLine(rec) : null,
        strip,
        classMix(rec),
        overlap(rec, s.c),
        junk ? el("div", {class: "muted", text: "images of the clusters marked junk in clusters.yaml"})
          : fixBlock(s.m, rec, function (id, on) {
            picked = picked.filter(function (x) { return x !== id; });
            if (on) picked.push(id);
            showMerge(s.m);
          }, picked.indexOf(rec.id) >= 0)
      ];
      return el("article", {class: "card" + (junk ? " junk" : "") + (rec.size ? "" : " empty"), "data-cluster": rec.id}, children);
    }

    window.addEventListener("hashchange", render);
    movedNotice();
    render();
  }

  // ---------------------------------------------------------------- cluster.html

  function clusterPage() {
    var run = store.run;

    function state() {
      var p = params();
      var m = method(p.m) ? p.m : run.methods[0].name;
      return {m: m, k: p.k === undefined ? "0" : p.k, c: method(p.c) && p.c !== m ? p.c : "",
              p: Math.max(1, parseInt(p.p || "1", 10) || 1)};
    }

    $("method").addEventListener("change", function () {
      location.href = "index.html" + hash({m: $("method").value});
    });
    $("compare").addEventListener("change", function () {
      var s = state();
      s.c = $("compare").value;
      location.replace(hash(s));
    });

    function render() {
      var s = state();
      fillMethodSelects(s);
      $("back").setAttribute("href", "index.html" + hash({m: s.m, c: s.c}));
      var wanted = [clusters(s.m)];
      if (s.c) wanted.push(clusters(s.c));
      var rec;
      Promise.all(wanted).then(function (loaded) {
        rec = loaded[0].filter(function (r) { return String(r.id) === s.k; })[0];
        if (!rec) throw new Error("no cluster " + s.k + " of " + s.m + " (merged away, or not in this run)");
        return members(s.m, s.k);
      }).then(function (list) {
        var pages = Math.max(1, Math.ceil(list.rows.length / run.page_size));
        var page = Math.min(s.p, pages);
        var from = (page - 1) * run.page_size;
        var to = Math.min(list.rows.length, from + run.page_size);
        var checkFrom = list.rows.length - (rec.check || 0);
        var visible = list.rows.slice(from, to).concat(list.rows.slice(checkFrom));
        return loadRows(visible).then(function () {
          draw(s, rec, list, page, pages, from, to, checkFrom);
        });
      }).catch(fail);
    }

    function tile(s, info, list, i, checkFrom) {
      var row = list.rows[i];
      var image = rowInfo(row);
      var picture = image.thumb ? thumbnail(row, image.file) : el("span", {class: "nothumb", text: "no thumbnail"});
      var caption = [el("span", {class: "score", title: info.score, text: score(list.score[i], true)})];
      if (image.cls >= 0) caption.push(" ", el("span", {class: "cls", text: className(image.cls)}));
      if (s.c) {
        caption.push(" ", el("span", {class: "other", title: "its cluster in " + method(s.c).title,
                                      text: "\u2192 " + clusterLabel(s.c, image.cluster(s.c))}));
      }
      caption.push(el("br"), image.href ? el("a", {class: "src", href: image.href, title: image.source, text: image.file})
        : el("span", {class: "src", title: image.source, text: image.file}));
      var check = i >= checkFrom;
      return el("figure", {class: "member" + (check ? " tocheck" : ""), "data-row": row,
                           title: check ? "one of the least confident members: check it" : null}, [
        image.href ? el("a", {href: image.href}, [picture]) : picture,
        el("figcaption", {}, caption)
      ]);
    }

    function pager(s, page, pages) {
      var nav = [];
      function link(p, text) {
        var target = {m: s.m, k: s.k, c: s.c, p: p};
        return p === page || p < 1 || p > pages ? el("span", {class: "muted", text: text})
          : el("a", {href: hash(target), text: text});
      }
      nav.push(link(1, "\u00ab first"), " ", link(page - 1, "\u2039 previous"), " ",
               el("span", {class: "at", text: "page " + page + " of " + pages}), " ",
               link(page + 1, "next \u203a"), " ", link(pages, "last \u00bb"));
      return nav;
    }

    function draw(s, rec, list, page, pages, from, to, checkFrom) {
      var info = method(s.m);
      document.title = rec.id + " " + (rec.name || "") + " \u2013 " + run.title;
      var head = $("head");
      head.textContent = "";
      head.appendChild(el("h1", {}, [el("span", {class: "cid", text: rec.id === "junk" ? "\u2013" : String(rec.id)}), " ",
                                     el("span", {class: "name", text: rec.name || "(unnamed)"}),
                                     el("span", {class: "muted", text: "  " + info.title})]));
      if (rec.gloss) head.appendChild(el("div", {class: "gloss", text: rec.gloss}));
      head.appendChild(el("div", {class: "meta", text: describe(rec, info)}));
      if (rec.runner_ups && rec.runner_ups.length) head.appendChild(alsoList(rec));
      var mix = classMix(rec);
      if (mix) head.appendChild(mix);
      var other = overlap(rec, s.c);
      if (other) head.appendChild(other);
      if (rec.id !== "junk") head.appendChild(fixBlock(s.m, rec, null));

      var checkGrid = $("check-grid");
      checkGrid.textContent = "";
      var nCheck = list.rows.length - checkFrom;
      $("check").hidden = nCheck === 0;
      $("check-note").textContent = nCheck ? "the " + nCheck + " least confident (by " + info.score + "), least first" : "";
      for (var j = list.rows.length - 1; j >= checkFrom; j--) checkGrid.appendChild(tile(s, info, list, j, checkFrom));

      var grid = $("grid");
      grid.textContent = "";
      for (var i = from; i < to; i++) grid.appendChild(tile(s, info, list, i, checkFrom));
      $("members-note").textContent = list.rows.length ? "(" + (from + 1) + "\u2013" + to + " of " + list.rows.length + ", by " + info.score + ")" : "(none)";
      ["pages-top", "pages-bottom"].forEach(function (id) {
        var nav = $(id);
        nav.textContent = "";
        pager(s, page, pages).forEach(function (part) {
          nav.appendChild(typeof part === "string" ? document.createTextNode(part) : part);
        });
      });
    }

    window.addEventListener("hashchange", render);
    render();
  }

  return {put: put, overview: overview, clusterPage: clusterPage};
})();
