// The segment rule editor: edits the hidden "rules" field of the segment admin as a tree of
// groups (all/any, negate) and leaves, and shows a live count. The rule format is documented in
// residents/segments.py; everything offered (attributes, categories, procedures, labels) comes
// from the JSON blob "segment-editor-data" the page embeds.
(function () {
  "use strict";

  function start() {
    var root = document.getElementById("segment-rule-editor");
    var blob = document.getElementById("segment-editor-data");
    if (!root || !blob) {
      return;
    }
    var data = JSON.parse(blob.textContent);
    var labels = data.labels;
    var input = document.querySelector("input[name=rules]");
    var readonly = data.readonly || !input;
    var tree = initialTree();
    var countTimer = null;
    var countRequest = 0;

    function initialTree() {
      if (input && input.value) {
        try {
          var parsed = JSON.parse(input.value);
          if (parsed && typeof parsed === "object" && parsed.match) {
            return parsed;
          }
        } catch (error) {
          // A broken value is replaced by an empty group below.
        }
      }
      if (data.rules && data.rules.match) {
        return data.rules;
      }
      return newGroup();
    }

    function newGroup() {
      return { match: "all", rules: [] };
    }

    function newLeaf() {
      return { type: "follow", op: "following" };
    }

    // -- small DOM helpers ------------------------------------------------------

    function el(tag, attributes, children) {
      var node = document.createElement(tag);
      Object.keys(attributes || {}).forEach(function (name) {
        if (name === "text") {
          node.textContent = attributes[name];
        } else if (name === "className") {
          node.className = attributes[name];
        } else {
          node.setAttribute(name, attributes[name]);
        }
      });
      (children || []).forEach(function (child) {
        if (child) {
          node.appendChild(child);
        }
      });
      if (readonly && /^(INPUT|SELECT|BUTTON)$/.test(node.tagName)) {
        node.disabled = true;
      }
      return node;
    }

    function select(options, value, onChange, placeholder) {
      var node = el("select");
      if (placeholder !== undefined) {
        node.appendChild(el("option", { value: "", text: placeholder }));
      }
      options.forEach(function (option) {
        var item = el("option", { value: String(option.value), text: option.label });
        if (String(option.value) === String(value === undefined || value === null ? "" : value)) {
          item.selected = true;
        }
        node.appendChild(item);
      });
      node.addEventListener("change", function () {
        onChange(node.value);
      });
      return node;
    }

    function button(text, onClick) {
      var node = el("button", { type: "button", className: "button segment-button", text: text });
      node.addEventListener("click", onClick);
      return node;
    }

    function negateBox(node) {
      var box = el("input", { type: "checkbox" });
      box.checked = Boolean(node.negate);
      box.addEventListener("change", function () {
        if (box.checked) {
          node.negate = true;
        } else {
          delete node.negate;
        }
        changed(false);
      });
      return el("label", { className: "segment-negate" }, [box, document.createTextNode(" " + labels.negate)]);
    }

    function opOptions(ops) {
      return ops.map(function (op) {
        return { value: op, label: data.op_labels[op] || op };
      });
    }

    // -- value inputs ------------------------------------------------------------

    function textInput(value, onInput, type) {
      var node = el("input", { type: type || "text", className: "segment-value" });
      node.value = value === undefined || value === null ? "" : value;
      node.addEventListener("input", function () {
        onInput(node.value);
      });
      return node;
    }

    function numberOrNull(raw) {
      if (raw === "") {
        return null;
      }
      var number = Number(raw);
      return isNaN(number) ? null : number;
    }

    function dateOrNull(raw) {
      return raw === "" ? null : raw;
    }

    // One value (or, for "between", two) of a number or date.
    function comparedValues(leaf, type, isRange) {
      var parse = type === "number" ? numberOrNull : dateOrNull;
      if (isRange) {
        var pair = Array.isArray(leaf.value) ? leaf.value : [null, null];
        leaf.value = pair;
        return el("span", {}, [
          textInput(pair[0], function (raw) { pair[0] = parse(raw); changed(false); }, type),
          document.createTextNode(" " + labels.and + " "),
          textInput(pair[1], function (raw) { pair[1] = parse(raw); changed(false); }, type),
        ]);
      }
      return textInput(leaf.value, function (raw) { leaf.value = parse(raw); changed(false); }, type);
    }

    function choiceValues(leaf, attribute) {
      var choices = (attribute.choices || []).map(function (choice) {
        return { value: choice.value, label: choice.label || choice.value };
      });
      if (leaf.op === "equals") {
        return select(choices, leaf.value, function (value) { leaf.value = value; changed(false); }, labels.choose);
      }
      var chosen = Array.isArray(leaf.value) ? leaf.value : [];
      leaf.value = chosen;
      return el("span", { className: "segment-choices" }, choices.map(function (choice) {
        var box = el("input", { type: "checkbox", value: choice.value });
        box.checked = chosen.indexOf(choice.value) !== -1;
        box.addEventListener("change", function () {
          var at = chosen.indexOf(choice.value);
          if (box.checked && at === -1) {
            chosen.push(choice.value);
          } else if (!box.checked && at !== -1) {
            chosen.splice(at, 1);
          }
          changed(false);
        });
        return el("label", {}, [box, document.createTextNode(" " + choice.label)]);
      }));
    }

    // -- leaves ------------------------------------------------------------------

    function attributeControls(leaf) {
      var attribute = data.attributes.find(function (each) { return each.key === leaf.attribute; });
      var parts = [
        select(
          data.attributes.map(function (each) { return { value: each.key, label: each.label }; }),
          leaf.attribute,
          function (key) {
            var next = data.attributes.find(function (each) { return each.key === key; });
            leaf.attribute = key;
            leaf.op = next ? data.attribute_ops[next.kind][0] : "";
            delete leaf.value;
            changed(true);
          },
          labels.choose
        ),
      ];
      if (!attribute) {
        return parts;
      }
      parts.push(select(opOptions(data.attribute_ops[attribute.kind]), leaf.op, function (op) {
        var wasRange = leaf.op === "between" || leaf.op === "in";
        leaf.op = op;
        if (op === "set" || op === "not_set" || wasRange || op === "between" || op === "in") {
          delete leaf.value;
        }
        changed(true);
      }));
      if (leaf.op === "set" || leaf.op === "not_set") {
        return parts;
      }
      if (attribute.kind === "single_choice" || attribute.kind === "multiple_choice") {
        parts.push(choiceValues(leaf, attribute));
      } else if (attribute.kind === "number" || attribute.kind === "date") {
        parts.push(comparedValues(leaf, attribute.kind, leaf.op === "between"));
      } else {
        parts.push(textInput(leaf.value, function (value) { leaf.value = value; changed(false); }));
      }
      return parts;
    }

    function categoryControls(leaf) {
      var parts = [];
      if (leaf.op !== "never_chose") {
        parts.push(select(
          data.categories.map(function (each) { return { value: each.key, label: each.name }; }),
          leaf.category,
          function (key) { leaf.category = key; changed(false); },
          labels.choose
        ));
      }
      parts.push(select(opOptions(data.category_ops), leaf.op, function (op) {
        leaf.op = op;
        if (op === "never_chose") {
          delete leaf.category;
        }
        changed(true);
      }));
      return parts;
    }

    function followControls(leaf) {
      var parts = [select(opOptions(data.follow_ops), leaf.op, function (op) {
        leaf.op = op;
        delete leaf.value;
        changed(true);
      })];
      if (leaf.op.indexOf("first_followed_") === 0) {
        parts.push(comparedValues(leaf, "date", leaf.op === "first_followed_between"));
      }
      return parts;
    }

    function applicationControls(leaf) {
      var procedure = data.procedures.find(function (each) { return each.id === leaf.procedure; });
      var parts = [
        select(
          data.procedures.map(function (each) { return { value: each.id, label: each.name }; }),
          leaf.procedure,
          function (id) {
            leaf.procedure = id === "" ? null : Number(id);
            delete leaf.status;
            changed(true);
          },
          labels.choose
        ),
        el("span", { text: labels.has_application }),
      ];
      if (procedure) {
        parts.push(select(
          procedure.statuses.map(function (each) { return { value: each.code, label: each.label }; }),
          leaf.status,
          function (code) {
            if (code) {
              leaf.status = code;
            } else {
              delete leaf.status;
            }
            changed(false);
          },
          labels.any_status
        ));
      }
      ["submitted_from", "submitted_to"].forEach(function (name) {
        parts.push(el("label", { className: "segment-date" }, [
          document.createTextNode(labels[name] + " "),
          textInput(leaf[name], function (value) {
            if (value) {
              leaf[name] = value;
            } else {
              delete leaf[name];
            }
            changed(false);
          }, "date"),
        ]));
      });
      return parts;
    }

    var LEAF_DEFAULTS = {
      attribute: function () { return { type: "attribute", attribute: "", op: "" }; },
      category: function () { return { type: "category", op: "receives" }; },
      follow: newLeaf,
      application: function () { return { type: "application", op: "has", procedure: null }; },
    };
    var LEAF_CONTROLS = {
      attribute: attributeControls,
      category: categoryControls,
      follow: followControls,
      application: applicationControls,
    };

    function renderLeaf(leaf, parent, index) {
      var typeSelect = select(
        Object.keys(LEAF_DEFAULTS).map(function (type) { return { value: type, label: labels.types[type] }; }),
        leaf.type,
        function (type) {
          parent.rules[index] = LEAF_DEFAULTS[type]();
          changed(true);
        }
      );
      var controls = (LEAF_CONTROLS[leaf.type] || function () { return []; })(leaf);
      return el("div", { className: "segment-leaf" }, [
        typeSelect,
        el("span", { className: "segment-controls" }, controls),
        negateBox(leaf),
        readonly ? null : button(labels.remove, function () {
          parent.rules.splice(index, 1);
          changed(true);
        }),
      ]);
    }

    // -- groups ------------------------------------------------------------------

    function renderGroup(group, depth, parent, index) {
      var header = el("div", { className: "segment-group-header" }, [
        select(
          [{ value: "all", label: labels.all }, { value: "any", label: labels.any }],
          group.match,
          function (match) { group.match = match; changed(false); }
        ),
        negateBox(group),
        readonly || !parent ? null : button(labels.remove, function () {
          parent.rules.splice(index, 1);
          changed(true);
        }),
      ]);
      var children = el("div", { className: "segment-children" }, group.rules.map(function (child, at) {
        return child && child.match ? renderGroup(child, depth + 1, group, at) : renderLeaf(child, group, at);
      }));
      var footer = readonly ? null : el("div", { className: "segment-group-footer" }, [
        button(labels.add_rule, function () { group.rules.push(newLeaf()); changed(true); }),
        depth < data.max_depth ? button(labels.add_group, function () {
          group.rules.push({ match: "any", rules: [newLeaf()] });
          changed(true);
        }) : null,
      ]);
      return el("div", { className: "segment-group" + (group.negate ? " segment-negated" : "") }, [
        header, children, footer,
      ]);
    }

    function render() {
      root.replaceChildren(renderGroup(tree, 1, null, 0));
    }

    // -- saving into the form, and the live count ------------------------------------

    function changed(structural) {
      if (structural) {
        render();
      }
      if (input) {
        input.value = JSON.stringify(tree);
      }
      scheduleCount();
    }

    function csrfToken() {
      var field = document.querySelector("input[name=csrfmiddlewaretoken]");
      return field ? field.value : "";
    }

    function scheduleCount() {
      if (readonly) {
        return;
      }
      clearTimeout(countTimer);
      countTimer = setTimeout(count, 400);
    }

    function showCount(text, problems, sample) {
      document.getElementById("segment-live-count").textContent = text;
      var problemList = document.getElementById("segment-live-problems");
      problemList.replaceChildren.apply(problemList, (problems || []).map(function (problem) {
        return el("li", { text: problem });
      }));
      var sampleBox = document.getElementById("segment-live-sample");
      if (!sample) {
        sampleBox.replaceChildren();
        return;
      }
      if (!sample.length) {
        sampleBox.replaceChildren(el("p", { text: labels.no_members }));
        return;
      }
      var rows = sample.map(function (member) {
        var id = member.url
          ? el("a", { href: member.url, text: member.line_user_id })
          : document.createTextNode(member.line_user_id);
        return el("tr", {}, [el("td", {}, [id]), el("td", { text: member.display_name || labels.no_display_name })]);
      });
      sampleBox.replaceChildren(
        el("p", { text: labels.sample }),
        el("table", { className: "segment-sample" }, [el("tbody", {}, rows)])
      );
    }

    function count() {
      var mine = ++countRequest;
      showCount(labels.counting, [], null);
      fetch(data.count_url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({ rules: tree }),
      })
        .then(function (response) {
          if (response.status !== 200 && response.status !== 400) {
            throw new Error(String(response.status));
          }
          return response.json();
        })
        .then(function (answer) {
          if (mine !== countRequest) {
            return;  // a newer edit is being counted
          }
          if (answer.problems) {
            showCount(labels.problems, answer.problems, null);
          } else {
            var text = answer.count === null
              ? labels.count_hidden
              : labels.count.replace("%(count)s", answer.count.toLocaleString());
            showCount(text, [], answer.sample);
          }
        })
        .catch(function () {
          if (mine === countRequest) {
            showCount(labels.failed, [], null);
          }
        });
    }

    render();
    if (input) {
      input.value = JSON.stringify(tree);
      if (tree.rules.length) {
        scheduleCount();
      }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
