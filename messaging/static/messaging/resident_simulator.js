/*
 * The resident simulator (住民シミュレーター): one simulated resident of the whole LINE account.
 *
 * What the staff member types or taps is sent to the server's JSON endpoints, which turn it into a
 * signed LINE webhook event on the real webhook path. What the city sends back arrives later (the
 * inbox worker and the outbox sender run in the background), so the page polls for the LINE message
 * objects the fake LINE received for this resident and draws them as LINE would: text bubbles,
 * quick-reply chips, buttons / confirm / carousel templates and Flex bubbles and carousels.
 * A postback button sends back exactly its `data`. Text from the server is always inserted as
 * text, never as HTML.
 */
(function () {
  "use strict";

  var configNode = document.getElementById("rsim-config");
  if (!configNode) {
    return;
  }
  var config = JSON.parse(configNode.textContent);
  var phone = document.querySelector(".sim-phone");
  if (!phone) {
    return;
  }

  var chat = document.getElementById("sim-chat");
  var quick = document.getElementById("sim-quick");
  var statusLine = document.getElementById("rsim-status");
  var stateLabel = document.getElementById("rsim-state");
  var userIdLabel = document.getElementById("rsim-user-id");
  var nameLabel = document.getElementById("rsim-name");
  var textForm = document.getElementById("sim-input");
  var textInput = document.getElementById("sim-text");
  var datePanel = document.getElementById("sim-date-panel");
  var dateLabel = document.getElementById("sim-date-label");
  var dateInput = document.getElementById("sim-date-input");
  var dateHint = document.getElementById("sim-date-hint");
  var locationPanel = document.getElementById("sim-location-panel");
  var fileInput = document.getElementById("sim-file");
  var csrfInput = document.querySelector("input[name=csrfmiddlewaretoken]");
  var csrfToken = csrfInput ? csrfInput.value : "";

  var FAST_POLL_MS = 1000;
  var SLOW_POLL_MS = 4000;
  var ACTIVE_MS = 30000; // poll fast this long after the last message either way
  var MAX_ENTRIES = 300; // kept in sessionStorage per resident
  var PICKER_INPUT = { date: "date", time: "time", datetime: "datetime-local" };

  var userId = config.user_id;
  var cursor = 0;
  var instance = null;
  var entries = [];
  var followState = null;
  var inFlight = 0; // requests to the endpoints not answered yet
  var serverPending = 0; // events in the inbox + messages in the outbox
  var lastActivity = Date.now();
  var pollTimer = null;
  var polling = false;
  var queue = Promise.resolve(); // sends go out one after the other, in order
  var pickerAction = null;
  var errorText = "";

  // ------------------------------------------------------------------
  // Small helpers
  // ------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function pad(number) {
    return number < 10 ? "0" + number : String(number);
  }

  function clock(date) {
    return pad(date.getHours()) + ":" + pad(date.getMinutes());
  }

  function timeOf(iso) {
    var date = iso ? new Date(iso) : new Date();
    return isNaN(date.getTime()) ? clock(new Date()) : clock(date);
  }

  function scrollToEnd() {
    chat.scrollTop = chat.scrollHeight;
  }

  function storageKey() {
    return "rsim:" + userId;
  }

  function save() {
    try {
      entries = entries.slice(-MAX_ENTRIES);
      window.sessionStorage.setItem(
        storageKey(),
        JSON.stringify({ instance: instance, cursor: cursor, entries: entries })
      );
    } catch (error) {
      // Storage full or disabled: the chat still works, it is just not kept over a reload.
    }
  }

  function restore() {
    try {
      var saved = JSON.parse(window.sessionStorage.getItem(storageKey()) || "null");
      if (saved && Array.isArray(saved.entries)) {
        instance = saved.instance || null;
        cursor = typeof saved.cursor === "number" ? saved.cursor : 0;
        entries = saved.entries;
      }
    } catch (error) {
      entries = [];
    }
  }

  // ------------------------------------------------------------------
  // Rows and notices
  // ------------------------------------------------------------------

  function addRow(side, content, time) {
    var row = el("div", "sim-row " + side);
    var stamp = el("span", "sim-time", time || clock(new Date()));
    if (side === "city") {
      row.appendChild(el("span", "sim-avatar", "市"));
      row.appendChild(content);
      row.appendChild(stamp);
    } else {
      row.appendChild(stamp);
      row.appendChild(content);
    }
    chat.appendChild(row);
    scrollToEnd();
    return row;
  }

  function addNotice(text, kind) {
    var notice = el("div", "sim-notice " + (kind || ""), text);
    chat.appendChild(notice);
    scrollToEnd();
    return notice;
  }

  // ------------------------------------------------------------------
  // LINE messages -> DOM
  // ------------------------------------------------------------------

  var SPACING = { none: "0", xs: "2px", sm: "4px", md: "8px", lg: "12px", xl: "16px", xxl: "20px" };
  var FONT_SIZES = {
    xxs: "0.6875rem", xs: "0.75rem", sm: "0.8125rem", md: "0.875rem", lg: "1rem",
    xl: "1.125rem", xxl: "1.25rem", "3xl": "1.5rem", "4xl": "1.75rem", "5xl": "2rem"
  };
  var COLOR = /^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$/;
  var LENGTH = /^\d{1,3}(\.\d+)?(px|%)$/;

  function spacing(value) {
    if (typeof value !== "string") {
      return null;
    }
    if (SPACING.hasOwnProperty(value)) {
      return SPACING[value];
    }
    return LENGTH.test(value) ? value : null;
  }

  function placeholder(text) {
    return el("div", "sim-bubble rsim-placeholder", text);
  }

  function actionButton(action, className, label) {
    var button = el("button", className, label || (action && action.label) || "（ボタン）");
    button.type = "button";
    button.addEventListener("click", function () {
      runAction(action);
    });
    return button;
  }

  function templateActions(actions, kind) {
    var box = el("div", "sim-card-actions");
    (actions || []).forEach(function (action) {
      box.appendChild(actionButton(action, ""));
    });
    return box;
  }

  function templateCard(template, kind) {
    var card = el("div", "sim-card " + kind);
    if (template.title) {
      card.appendChild(el("div", "sim-card-title", template.title));
    }
    card.appendChild(el("div", "sim-card-text", template.text || ""));
    if (template.actions && template.actions.length) {
      card.appendChild(templateActions(template.actions, kind));
    }
    return card;
  }

  function renderTemplate(message) {
    var template = message.template || {};
    if (template.type === "buttons" || template.type === "confirm") {
      return templateCard(template, template.type);
    }
    if (template.type === "carousel" || template.type === "image_carousel") {
      var scroll = el("div", "rsim-scroll");
      (template.columns || []).forEach(function (column) {
        if (template.type === "image_carousel") {
          var card = el("div", "sim-card");
          card.appendChild(el("div", "sim-card-text rsim-placeholder", "［画像］"));
          card.appendChild(templateActions([column.action]));
          scroll.appendChild(card);
        } else {
          scroll.appendChild(templateCard(column, "buttons"));
        }
      });
      return scroll;
    }
    return placeholder(message.altText || "［テンプレートメッセージ］");
  }

  function flexText(node) {
    var classes = "rsim-text" + (node.wrap ? " wrap" : "") + (node.weight === "bold" ? " bold" : "");
    var out = el("div", classes);
    if (Array.isArray(node.contents) && node.contents.length) {
      node.contents.forEach(function (span) {
        if (span && span.type === "span") {
          var part = el("span", "", span.text || "");
          if (span.weight === "bold") {
            part.style.fontWeight = "bold";
          }
          if (COLOR.test(span.color || "")) {
            part.style.color = span.color;
          }
          out.appendChild(part);
        }
      });
    } else {
      out.textContent = node.text || "";
    }
    if (FONT_SIZES.hasOwnProperty(node.size)) {
      out.style.fontSize = FONT_SIZES[node.size];
    }
    if (COLOR.test(node.color || "")) {
      out.style.color = node.color;
    }
    if (node.align === "center" || node.align === "end") {
      out.style.textAlign = node.align;
    }
    return out;
  }

  function flexComponent(node, parentLayout, first, parentSpacing) {
    if (!node || typeof node !== "object") {
      return null;
    }
    var out = null;
    var horizontal = parentLayout === "horizontal" || parentLayout === "baseline";
    if (node.type === "box") {
      var layout = node.layout === "horizontal" || node.layout === "baseline" ? node.layout : "vertical";
      out = el("div", "rsim-box " + layout);
      (node.contents || []).forEach(function (child, index) {
        var rendered = flexComponent(child, layout, index === 0, node.spacing);
        if (rendered) {
          out.appendChild(rendered);
        }
      });
      if (COLOR.test(node.backgroundColor || "")) {
        out.style.backgroundColor = node.backgroundColor;
      }
      var padding = spacing(node.paddingAll);
      if (padding) {
        out.style.padding = padding;
      }
    } else if (node.type === "text") {
      out = flexText(node);
    } else if (node.type === "button") {
      var style = node.style === "primary" || node.style === "secondary" ? node.style : "link";
      out = actionButton(node.action, "rsim-button " + style + (node.height === "sm" ? " sm" : ""));
    } else if (node.type === "separator") {
      out = el("div", "rsim-separator");
      out.setAttribute("role", "separator");
    } else if (node.type === "filler") {
      out = el("div", "rsim-filler");
    } else if (node.type === "spacer") {
      out = el("div", "");
      out.style.height = spacing(node.size) || SPACING.md;
    } else if (node.type === "image" || node.type === "video") {
      out = el("div", "rsim-placeholder", node.type === "image" ? "［画像］" : "［動画］");
    } else {
      return null; // icon and anything newer: nothing to show
    }
    // LINE: a component's margin, else its box's spacing, separates it from the one before.
    var margin = first ? null : spacing(node.margin) || spacing(parentSpacing);
    if (margin) {
      out.style[horizontal ? "marginLeft" : "marginTop"] = margin;
    }
    if (horizontal && typeof node.flex === "number") {
      out.style.flex = node.flex === 0 ? "0 0 auto" : node.flex + " 1 0";
    }
    return out;
  }

  function flexBubble(bubble) {
    var card = el("div", "rsim-flex");
    ["header", "hero", "body", "footer"].forEach(function (section) {
      var box = bubble && bubble[section];
      if (!box) {
        return;
      }
      var wrapper = el("div", "rsim-flex-section " + section);
      var rendered = flexComponent(box, "vertical", true, null);
      if (rendered) {
        wrapper.appendChild(rendered);
        card.appendChild(wrapper);
      }
    });
    return card;
  }

  function renderFlex(message) {
    var contents = message.contents || {};
    if (contents.type === "carousel") {
      var scroll = el("div", "rsim-scroll");
      (contents.contents || []).forEach(function (bubble) {
        scroll.appendChild(flexBubble(bubble));
      });
      return scroll;
    }
    if (contents.type === "bubble") {
      return flexBubble(contents);
    }
    return placeholder(message.altText || "［Flex メッセージ］");
  }

  function renderMessage(message) {
    if (!message || typeof message !== "object") {
      return placeholder("［表示できないメッセージ］");
    }
    switch (message.type) {
      case "text":
        return el("div", "sim-bubble", message.text || "");
      case "template":
        return renderTemplate(message);
      case "flex":
        return renderFlex(message);
      case "sticker":
        return el("div", "sim-bubble sticker", "🐻");
      case "image":
        return placeholder("［画像］");
      case "video":
        return placeholder("［動画］");
      case "audio":
        return placeholder("［音声］");
      case "location":
        return el("div", "sim-bubble", "📍 " + (message.title || "") + "\n" + (message.address || ""));
      case "imagemap":
        return placeholder(message.altText || "［イメージマップ］");
      default:
        return placeholder("［" + String(message.type || "?") + " メッセージ］");
    }
  }

  function showQuickReplies(message) {
    quick.textContent = "";
    var items = message && message.quickReply && message.quickReply.items;
    (items || []).forEach(function (item) {
      if (item && item.action) {
        quick.appendChild(actionButton(item.action, "sim-chip"));
      }
    });
  }

  // ------------------------------------------------------------------
  // The transcript (city messages from the fake LINE, the resident's own from this page)
  // ------------------------------------------------------------------

  function drawEntry(entry) {
    if (entry.side === "city") {
      addRow("city", renderMessage(entry.message), timeOf(entry.at));
    } else if (entry.side === "resident") {
      var bubble;
      if (entry.kind === "sticker") {
        bubble = el("div", "sim-bubble sticker", "🐻");
      } else if (entry.kind === "image" && entry.url) {
        bubble = el("div", "sim-bubble");
        var image = document.createElement("img");
        image.alt = entry.text || "";
        image.src = entry.url;
        bubble.appendChild(image);
      } else {
        bubble = el("div", "sim-bubble", entry.text);
      }
      addRow("resident", bubble, timeOf(entry.at));
    } else {
      addNotice(entry.text, entry.kind);
    }
  }

  function addEntry(entry, keep) {
    entry.at = entry.at || new Date().toISOString();
    drawEntry(entry);
    if (keep !== false) {
      var stored = entry.url ? { side: entry.side, kind: entry.kind, text: entry.text, at: entry.at } : entry;
      entries.push(stored);
      save();
    }
  }

  function redraw() {
    chat.textContent = "";
    entries.forEach(drawEntry);
    var last = entries.length ? entries[entries.length - 1] : null;
    showQuickReplies(last && last.side === "city" ? last.message : null);
  }

  // ------------------------------------------------------------------
  // Status
  // ------------------------------------------------------------------

  function updateStatus() {
    statusLine.classList.toggle("error", !!errorText);
    if (errorText) {
      statusLine.textContent = errorText;
    } else if (inFlight || serverPending) {
      statusLine.textContent = "処理中…";
    } else {
      statusLine.textContent = "";
    }
  }

  function updateFollow(state) {
    followState = state;
    var labels = { "new": "まだ友だち追加していません", following: "友だち", blocked: "ブロック中" };
    stateLabel.textContent = labels[state] || "";
    document.querySelectorAll("[data-rsim-tool=unfollow]").forEach(function (button) {
      button.hidden = state !== "following";
    });
    document.querySelectorAll("[data-rsim-tool=follow]").forEach(function (button) {
      button.hidden = state === "following";
    });
  }

  // ------------------------------------------------------------------
  // Talking to the server
  // ------------------------------------------------------------------

  function call(method, url, body, isForm) {
    var options = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      options.headers["X-CSRFToken"] = csrfToken;
      if (isForm) {
        options.body = body;
      } else {
        options.headers["Content-Type"] = "application/json";
        options.body = JSON.stringify(body || {});
      }
    }
    return fetch(url, options).then(function (response) {
      return response
        .json()
        .catch(function () {
          return null;
        })
        .then(function (data) {
          if (!response.ok || !data) {
            throw new Error(data && data.error ? data.error : "エラーが発生しました（" + response.status + "）。");
          }
          return data;
        });
    });
  }

  // One request at a time, in order; the reply is not waited for (it arrives by polling).
  function enqueue(url, body, isForm) {
    inFlight += 1;
    errorText = "";
    updateStatus();
    lastActivity = Date.now();
    var sentFor = userId;
    var result = queue.then(function () {
      if (sentFor !== userId) {
        return null; // another resident since
      }
      return call("POST", url, body, isForm);
    });
    queue = result
      .catch(function (error) {
        addEntry({ side: "notice", kind: "error", text: error.message }, false);
      })
      .then(function () {
        inFlight -= 1;
        updateStatus();
        pollSoon();
      });
    return result;
  }

  function send(payload, echo) {
    if (!config.available) {
      return;
    }
    closePanels();
    showQuickReplies(null);
    if (echo) {
      addEntry(echo);
    }
    enqueue(config.urls.send, payload);
  }

  function poll() {
    if (polling || !config.available) {
      return;
    }
    polling = true;
    clearTimeout(pollTimer);
    var askedFor = userId;
    call("GET", config.urls.poll + "?after=" + encodeURIComponent(String(cursor)))
      .then(function (data) {
        if (askedFor !== userId || data.user_id !== userId) {
          return;
        }
        if (instance !== null && data.instance !== instance) {
          // The fake LINE restarted: its numbering starts again, so read everything from the start.
          instance = data.instance;
          cursor = 0;
          addEntry({ side: "notice", kind: "", text: "LINE（fakeline）が再起動されました。" });
          polling = false;
          poll();
          return;
        }
        instance = data.instance;
        var last = null;
        data.messages.forEach(function (item) {
          var entry = { side: "city", message: item.message, at: item.sentAt, seq: item.seq };
          drawEntry(entry);
          entries.push(entry);
          last = item.message;
        });
        cursor = data.next;
        if (last) {
          lastActivity = Date.now();
          showQuickReplies(last);
          if (!richMenuAlias) {
            loadRichMenu(""); // what was said may have changed the resident's menu (e.g. 受信設定)
          }
        }
        save();
        serverPending = (data.pending.inbox || 0) + (data.pending.outbox || 0);
        if (errorText && !inFlight) {
          errorText = "";
        }
        updateFollow(data.state);
        updateStatus();
      })
      .catch(function (error) {
        errorText = error.message;
        updateStatus();
      })
      .then(function () {
        polling = false;
        schedule();
      });
  }

  function schedule() {
    clearTimeout(pollTimer);
    if (document.hidden || !config.available) {
      return;
    }
    var busy = inFlight || serverPending || Date.now() - lastActivity < ACTIVE_MS;
    pollTimer = setTimeout(poll, busy ? FAST_POLL_MS : SLOW_POLL_MS);
  }

  function pollSoon() {
    clearTimeout(pollTimer);
    if (!polling && !document.hidden) {
      pollTimer = setTimeout(poll, 300);
    }
  }

  // ------------------------------------------------------------------
  // Actions and panels
  // ------------------------------------------------------------------

  function closePanels() {
    datePanel.hidden = true;
    locationPanel.hidden = true;
  }

  function lineDate(value) {
    return typeof value === "string" ? value.replace("t", "T") : "";
  }

  function openPicker(action) {
    closePanels();
    pickerAction = action;
    var mode = PICKER_INPUT.hasOwnProperty(action.mode) ? action.mode : "date";
    dateInput.type = PICKER_INPUT[mode];
    dateLabel.textContent = action.label || "日付を選ぶ";
    dateInput.value = lineDate(action.initial);
    dateInput.min = lineDate(action.min);
    dateInput.max = lineDate(action.max);
    var hint = [];
    if (action.min) {
      hint.push(lineDate(action.min) + " から");
    }
    if (action.max) {
      hint.push(lineDate(action.max) + " まで");
    }
    dateHint.textContent = hint.length ? "選べる範囲: " + hint.join(" ") : "";
    datePanel.hidden = false;
    dateInput.focus();
  }

  function openLocation() {
    closePanels();
    locationPanel.hidden = false;
    document.getElementById("sim-latitude").focus();
  }

  function chooseImage(camera) {
    fileInput.value = "";
    if (camera) {
      fileInput.setAttribute("capture", "environment");
    } else {
      fileInput.removeAttribute("capture");
    }
    fileInput.click();
  }

  var richMenu = document.getElementById("rsim-richmenu");
  var richMenuBar = document.getElementById("rsim-richmenu-bar");
  var richMenuBody = document.getElementById("rsim-richmenu-body");
  var richMenuShown = "";
  var richMenuAlias = ""; // a tab the resident switched to: kept until they switch again

  function drawRichMenu(menu) {
    if (!menu || !menu.size || !menu.size.width || !menu.size.height) {
      richMenu.hidden = true;
      richMenuShown = "";
      return;
    }
    var opening = richMenuShown !== menu.id;
    richMenuShown = menu.id;
    richMenu.hidden = false;
    richMenuBar.textContent = (menu.chatBarText || "メニュー") + " ▾";
    richMenuBody.textContent = "";
    var picture = el("img");
    picture.src = menu.image_url;
    picture.alt = menu.chatBarText || "リッチメニュー";
    richMenuBody.appendChild(picture);
    (menu.areas || []).forEach(function (area) {
      var bounds = area.bounds || {};
      var action = area.action || {};
      var button = el("button", "rsim-richmenu-area");
      button.type = "button";
      button.title = action.label || action.displayText || action.text || action.uri || "";
      button.setAttribute("aria-label", button.title || "タイル");
      button.style.left = (100 * bounds.x / menu.size.width) + "%";
      button.style.top = (100 * bounds.y / menu.size.height) + "%";
      button.style.width = (100 * bounds.width / menu.size.width) + "%";
      button.style.height = (100 * bounds.height / menu.size.height) + "%";
      button.addEventListener("click", function () {
        runAction(action);
      });
      richMenuBody.appendChild(button);
    });
    if (opening) {
      richMenuBody.hidden = !menu.selected;
      richMenuBar.setAttribute("aria-expanded", String(!richMenuBody.hidden));
    }
  }

  function loadRichMenu(alias) {
    if (!config.available || !config.urls.richmenu) {
      return;
    }
    richMenuAlias = alias || "";
    var url = config.urls.richmenu + (alias ? "?alias=" + encodeURIComponent(alias) : "");
    call("GET", url)
      .then(function (data) {
        drawRichMenu(data.menu);
      })
      .catch(function () {
        /* no menu: the chat works without it */
      });
  }

  richMenuBar.addEventListener("click", function () {
    richMenuBody.hidden = !richMenuBody.hidden;
    richMenuBar.setAttribute("aria-expanded", String(!richMenuBody.hidden));
  });

  function runAction(action) {
    if (!action || typeof action !== "object") {
      return;
    }
    switch (action.type) {
      case "postback":
        // LINE shows the displayText (if any) as the resident's message, and sends `data` as it is.
        send(
          { type: "postback", data: action.data },
          action.displayText || action.text ? { side: "resident", kind: "text", text: action.displayText || action.text } : null
        );
        break;
      case "message":
        send({ type: "text", text: action.text }, { side: "resident", kind: "text", text: action.text });
        break;
      case "datetimepicker":
        openPicker(action);
        break;
      case "camera":
      case "cameraRoll":
        chooseImage(action.type === "camera");
        break;
      case "location":
        openLocation();
        break;
      case "richmenuswitch":
        // LINE shows the tab behind the alias, then sends the postback with the switch's outcome.
        loadRichMenu(action.richMenuAliasId);
        send({ type: "postback", data: action.data, params: { newRichMenuAliasId: action.richMenuAliasId, status: "SUCCESS" } }, null);
        break;
      case "uri":
        if (/^(https?:|tel:|mailto:)/i.test(action.uri || "")) {
          window.open(action.uri, "_blank", "noopener");
        }
        break;
      default:
        addEntry({ side: "notice", kind: "", text: "この操作（" + action.type + "）はシミュレーターでは使えません。" }, false);
    }
  }

  function uploadImage(file) {
    if (!file || !config.available) {
      return;
    }
    if (config.upload_max_bytes && file.size > config.upload_max_bytes) {
      addEntry({ side: "notice", kind: "error", text: config.upload_too_large }, false);
      return;
    }
    closePanels();
    showQuickReplies(null);
    var isImage = file.type && file.type.indexOf("image/") === 0;
    addEntry({
      side: "resident",
      kind: "image",
      text: isImage ? "📷 " + file.name : "📎 " + file.name,
      url: isImage ? URL.createObjectURL(file) : null
    });
    var form = new FormData();
    form.append("file", file);
    enqueue(config.urls.upload, form, true);
  }

  datePanel.addEventListener("submit", function (submitEvent) {
    submitEvent.preventDefault();
    if (!dateInput.value || !pickerAction) {
      return;
    }
    var mode = PICKER_INPUT.hasOwnProperty(pickerAction.mode) ? pickerAction.mode : "date";
    var params = {};
    params[mode] = dateInput.value;
    send(
      { type: "postback", data: pickerAction.data, params: params },
      { side: "resident", kind: "text", text: dateInput.value.replace("T", " ") }
    );
  });

  locationPanel.addEventListener("submit", function (submitEvent) {
    submitEvent.preventDefault();
    var latitude = parseFloat(document.getElementById("sim-latitude").value);
    var longitude = parseFloat(document.getElementById("sim-longitude").value);
    var address = document.getElementById("sim-address").value.trim();
    send(
      { type: "location", latitude: latitude, longitude: longitude, address: address, title: address ? "" : "位置情報" },
      { side: "resident", kind: "location", text: "📍 " + (address || latitude + ", " + longitude) }
    );
  });

  phone.querySelectorAll("[data-sim-close]").forEach(function (button) {
    button.addEventListener("click", closePanels);
  });

  phone.querySelectorAll("[data-sim-preset]").forEach(function (button) {
    button.addEventListener("click", function () {
      var preset = config.city_hall || {};
      document.getElementById("sim-latitude").value = preset.latitude;
      document.getElementById("sim-longitude").value = preset.longitude;
      document.getElementById("sim-address").value = preset.address || "";
    });
  });

  fileInput.addEventListener("change", function () {
    if (fileInput.files && fileInput.files[0]) {
      uploadImage(fileInput.files[0]);
    }
  });

  textForm.addEventListener("submit", function (submitEvent) {
    submitEvent.preventDefault();
    var text = textInput.value;
    if (!text.trim()) {
      return;
    }
    textInput.value = "";
    send({ type: "text", text: text }, { side: "resident", kind: "text", text: text });
  });

  // ------------------------------------------------------------------
  // The resident: open, another one, block and follow
  // ------------------------------------------------------------------

  function follow(ifNew) {
    inFlight += 1;
    updateStatus();
    return call("POST", config.urls.follow, { if_new: ifNew })
      .then(function (data) {
        updateFollow(data.state);
        if (data.sent) {
          lastActivity = Date.now();
          addEntry({ side: "notice", kind: "", text: ifNew ? "友だち追加しました" : "ブロックを解除しました" });
        }
      })
      .catch(function (error) {
        addEntry({ side: "notice", kind: "error", text: error.message }, false);
      })
      .then(function () {
        inFlight -= 1;
        updateStatus();
        pollSoon();
      });
  }

  function anotherResident() {
    queue = queue.then(function () {
      return call("POST", config.urls.reset, {})
        .then(function (data) {
          userId = data.user_id;
          userIdLabel.textContent = userId;
          nameLabel.textContent = data.display_name || userId;
          cursor = 0;
          instance = null;
          entries = [];
          serverPending = 0;
          errorText = "";
          chat.textContent = "";
          showQuickReplies(null);
          closePanels();
          updateFollow(data.state);
          return follow(true);
        })
        .catch(function (error) {
          addEntry({ side: "notice", kind: "error", text: error.message }, false);
        });
    });
  }

  document.querySelectorAll("[data-rsim-tool]").forEach(function (button) {
    button.addEventListener("click", function () {
      var tool = button.getAttribute("data-rsim-tool");
      if (!config.available) {
        return;
      }
      if (tool === "reset") {
        anotherResident();
      } else if (tool === "unfollow") {
        send({ type: "unfollow" }, { side: "notice", kind: "", text: "ブロックしました" });
      } else if (tool === "follow") {
        follow(false);
      } else if (tool === "sticker") {
        send({ type: "sticker" }, { side: "resident", kind: "sticker", text: "🐻" });
      } else if (tool === "image") {
        chooseImage(false);
      } else if (tool === "location") {
        openLocation();
      }
    });
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      poll();
    } else {
      clearTimeout(pollTimer);
    }
  });

  // ------------------------------------------------------------------
  // Start: the kept transcript, then follow if this resident never did, then poll.
  // ------------------------------------------------------------------

  if (!config.available) {
    addNotice("シミュレーター用の LINE に接続できないため、送信できません。", "error");
    return;
  }
  restore();
  redraw();
  follow(true).then(function () {
    loadRichMenu("");
    poll();
  });
})();
