/*
 * The "試す" simulator page: a LINE-like chat driven by the server's JSON endpoints.
 *
 * The page never builds engine state. It sends back the `event` dicts the server
 * handed out with each action, plus what the staff member types or picks
 * (text, a date, a location, a sticker, an image file). Text from the server is
 * always inserted as text, never as HTML.
 */
(function () {
  "use strict";

  var configNode = document.getElementById("sim-config");
  if (!configNode) {
    return;
  }
  var config = JSON.parse(configNode.textContent);

  // Choosing another procedure or version opens it straight away.
  var chooser = document.getElementById("sim-chooser");
  var versionSelect = document.getElementById("sim-version");
  if (chooser && versionSelect) {
    versionSelect.addEventListener("change", function () {
      var option = versionSelect.options[versionSelect.selectedIndex];
      if (!option || !option.value) {
        return;
      }
      var params = new URLSearchParams();
      params.set("procedure", option.getAttribute("data-procedure"));
      params.set("version", option.value);
      window.location.search = params.toString();
    });
  }

  var phone = document.querySelector(".sim-phone");
  if (!phone || !config.version) {
    return;
  }

  var chat = document.getElementById("sim-chat");
  var quick = document.getElementById("sim-quick");
  var textForm = document.getElementById("sim-input");
  var textInput = document.getElementById("sim-text");
  var datePanel = document.getElementById("sim-date-panel");
  var dateInput = document.getElementById("sim-date-input");
  var dateHint = document.getElementById("sim-date-hint");
  var locationPanel = document.getElementById("sim-location-panel");
  var fileInput = document.getElementById("sim-file");
  var csrfInput = document.querySelector("input[name=csrfmiddlewaretoken]");
  var csrfToken = csrfInput ? csrfInput.value : "";

  var busy = false;
  var dateTemplate = null; // the event of the date picker that was opened
  var locationTemplate = null; // the event of the location action (or a bare location event)
  var imageEvent = null; // the event of the image action in the last reply, if any (step, session)
  var locationEvent = null; // the event of the location action in the last reply, if any

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

  function timeNow() {
    var now = new Date();
    return pad(now.getHours()) + ":" + pad(now.getMinutes());
  }

  function scrollToEnd() {
    chat.scrollTop = chat.scrollHeight;
  }

  function copy(object) {
    return JSON.parse(JSON.stringify(object || {}));
  }

  function setBusy(value) {
    busy = value;
    phone.classList.toggle("busy", value);
    phone.setAttribute("aria-busy", value ? "true" : "false");
  }

  // ------------------------------------------------------------------
  // Bubbles
  // ------------------------------------------------------------------

  function addRow(side, content) {
    var row = el("div", "sim-row " + side);
    var time = el("span", "sim-time", timeNow());
    if (side === "city") {
      row.appendChild(el("span", "sim-avatar", "市"));
      row.appendChild(content);
      row.appendChild(time);
    } else {
      row.appendChild(time);
      row.appendChild(content);
    }
    chat.appendChild(row);
    scrollToEnd();
    return row;
  }

  function addResidentText(text) {
    addRow("resident", el("div", "sim-bubble", text));
  }

  function addResidentNode(node) {
    var bubble = el("div", "sim-bubble");
    bubble.appendChild(node);
    addRow("resident", bubble);
  }

  function addNotice(text, kind) {
    var notice = el("div", "sim-notice " + (kind || ""), text);
    chat.appendChild(notice);
    scrollToEnd();
    return notice;
  }

  function actionButton(action, className) {
    var button = el("button", className, action.label);
    button.type = "button";
    button.addEventListener("click", function () {
      runAction(action);
    });
    return button;
  }

  function addCityMessage(message) {
    if (message.layout === "summary") {
      addRow("city", summaryCard(message));
    } else if ((message.layout === "buttons" || message.layout === "confirm") && message.actions.length) {
      var card = el("div", "sim-card " + message.layout);
      card.appendChild(el("div", "sim-card-text", message.text));
      var actions = el("div", "sim-card-actions");
      message.actions.forEach(function (action) {
        actions.appendChild(actionButton(action, ""));
      });
      card.appendChild(actions);
      addRow("city", card);
    } else {
      addRow("city", el("div", "sim-bubble", message.text));
    }
  }

  function summaryCard(message) {
    var card = el("div", "sim-card summary");
    card.appendChild(el("div", "sim-card-text", message.heading || message.text));
    var list = el("dl", "sim-summary-rows");
    message.rows.forEach(function (row) {
      var item = el("div", "sim-summary-row");
      item.appendChild(el("dt", "", row.label));
      var value = el("dd", row.masked ? "masked" : "", row.value);
      if (row.masked) {
        value.appendChild(el("span", "sim-masked-badge", "機微情報"));
      }
      item.appendChild(value);
      if (row.edit) {
        var edit = actionButton(row.edit, "sim-summary-edit");
        edit.setAttribute("aria-label", row.label + "：" + row.edit.label);
        item.appendChild(edit);
      }
      list.appendChild(item);
    });
    card.appendChild(list);
    (message.notes || []).forEach(function (note) {
      card.appendChild(el("div", "sim-card-note", note));
    });
    if (message.actions.length) {
      var actions = el("div", "sim-card-actions");
      message.actions.forEach(function (action) {
        actions.appendChild(actionButton(action, ""));
      });
      card.appendChild(actions);
    }
    return card;
  }

  function showQuickReplies(actions) {
    quick.textContent = "";
    actions.forEach(function (action) {
      quick.appendChild(actionButton(action, "sim-chip"));
    });
  }

  // The words come from the server: a test application (試す) or a real one (代理入力).
  function addApplication(application) {
    var words = config.application_notice || {};
    var notice = addNotice("", "application");
    notice.appendChild(el("strong", "", words.title));
    notice.appendChild(document.createElement("br"));
    notice.appendChild(document.createTextNode("受付番号: " + application.receipt_number));
    notice.appendChild(document.createElement("br"));
    notice.appendChild(el("small", "", words.note));
    if (application.admin_url) {
      notice.appendChild(document.createElement("br"));
      var link = el("a", "", words.link);
      link.href = application.admin_url;
      link.target = "_blank";
      link.rel = "noopener";
      notice.appendChild(link);
    }
    scrollToEnd();
  }

  // ------------------------------------------------------------------
  // Talking to the server
  // ------------------------------------------------------------------

  function post(url, body, isForm) {
    var headers = { "X-CSRFToken": csrfToken, Accept: "application/json" };
    if (!isForm) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(body);
    }
    return fetch(url, { method: "POST", headers: headers, body: body, credentials: "same-origin" }).then(
      function (response) {
        return response
          .json()
          .catch(function () {
            return null;
          })
          .then(function (data) {
            if (!response.ok || !data) {
              var message = data && data.error ? data.error : "エラーが発生しました（" + response.status + "）。";
              throw new Error(message);
            }
            return data;
          });
      }
    );
  }

  function showReply(data) {
    var lastQuestion = null;
    imageEvent = null;
    locationEvent = null;
    data.messages.forEach(function (message) {
      addCityMessage(message);
      if (message.layout === "question" && message.actions.length) {
        lastQuestion = message;
      }
      message.actions.forEach(function (action) {
        if (action.kind === "camera" || action.kind === "camera_roll") {
          imageEvent = action.event;
        } else if (action.kind === "location") {
          locationEvent = action.event;
        }
      });
    });
    showQuickReplies(lastQuestion ? lastQuestion.actions : []);
    (data.applications || []).forEach(addApplication);
  }

  function request(url, body, isForm) {
    if (busy) {
      return Promise.resolve(null);
    }
    setBusy(true);
    closePanels();
    quick.textContent = "";
    return post(url, body, isForm)
      .then(function (data) {
        showReply(data);
        return data;
      })
      .catch(function (error) {
        addNotice(error.message, "error");
        return null;
      })
      .finally(function () {
        setBusy(false);
      });
  }

  function sendEvent(event, echo) {
    if (busy) {
      return Promise.resolve(null);
    }
    if (echo) {
      addResidentText(echo);
    }
    return request(config.urls.send, { procedure: config.procedure, version: config.version, event: event });
  }

  function restart() {
    if (busy) {
      return;
    }
    setBusy(true);
    post(config.urls.reset, { procedure: config.procedure, version: config.version })
      .then(function () {
        chat.textContent = "";
        quick.textContent = "";
        closePanels();
        addNotice("最初から始めます（" + timeNow() + "）");
        setBusy(false);
        return sendEvent({ type: "start", value: config.procedure });
      })
      .catch(function (error) {
        setBusy(false);
        addNotice(error.message, "error");
      });
  }

  function uploadImage(file, template) {
    if (!file || busy) {
      return;
    }
    if (config.upload_max_bytes && file.size > config.upload_max_bytes) {
      addNotice(config.upload_too_large, "error");
      return;
    }
    if (file.type && file.type.indexOf("image/") === 0) {
      var image = document.createElement("img");
      image.alt = file.name;
      image.src = URL.createObjectURL(file);
      addResidentNode(image);
    } else {
      addResidentNode(el("span", "sim-file-name", "📎 " + file.name));
    }
    var form = new FormData();
    form.append("procedure", config.procedure);
    form.append("version", config.version);
    form.append("step", (template && template.step) || "");
    form.append("session", (template && template.session) || "");
    form.append("file", file);
    request(config.urls.upload, form, true);
  }

  // ------------------------------------------------------------------
  // Actions and panels
  // ------------------------------------------------------------------

  function closePanels() {
    datePanel.hidden = true;
    locationPanel.hidden = true;
  }

  function openDatePicker(action) {
    closePanels();
    dateTemplate = copy(action.event || { type: "date" });
    var options = action.options || {};
    dateInput.value = options.initial || "";
    dateInput.min = options.min || "";
    dateInput.max = options.max || "";
    var hint = [];
    if (options.min) {
      hint.push(options.min + " から");
    }
    if (options.max) {
      hint.push(options.max + " まで");
    }
    dateHint.textContent = hint.length ? "選べる日: " + hint.join(" ") : "";
    datePanel.hidden = false;
    dateInput.focus();
  }

  function openLocation(event) {
    closePanels();
    locationTemplate = copy(event || locationEvent || { type: "location" });
    locationPanel.hidden = false;
    document.getElementById("sim-latitude").focus();
  }

  var pendingImageEvent = null;

  function chooseImage(event) {
    pendingImageEvent = event || null;
    fileInput.value = "";
    fileInput.click();
  }

  function runAction(action) {
    if (busy) {
      return;
    }
    if (action.kind === "date_picker") {
      openDatePicker(action);
    } else if (action.kind === "location") {
      openLocation(action.event);
    } else if (action.kind === "camera" || action.kind === "camera_roll") {
      chooseImage(action.event || imageEvent);
    } else if (action.event) {
      sendEvent(action.event, action.label);
    }
  }

  datePanel.addEventListener("submit", function (submitEvent) {
    submitEvent.preventDefault();
    if (!dateInput.value) {
      return;
    }
    var event = copy(dateTemplate);
    event.type = "date";
    event.value = dateInput.value;
    sendEvent(event, dateInput.value);
  });

  locationPanel.addEventListener("submit", function (submitEvent) {
    submitEvent.preventDefault();
    var event = copy(locationTemplate);
    event.type = "location";
    var address = document.getElementById("sim-address").value.trim();
    event.data = {
      latitude: parseFloat(document.getElementById("sim-latitude").value),
      longitude: parseFloat(document.getElementById("sim-longitude").value),
      address: address,
      title: address ? "" : "位置情報",
    };
    sendEvent(event, "📍 " + (address || event.data.latitude + ", " + event.data.longitude));
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
      uploadImage(fileInput.files[0], pendingImageEvent);
    }
  });

  textForm.addEventListener("submit", function (submitEvent) {
    submitEvent.preventDefault();
    var text = textInput.value;
    if (!text.trim() || busy) {
      return;
    }
    textInput.value = "";
    sendEvent({ type: "text", text: text }, text);
  });

  document.querySelectorAll("[data-sim-tool]").forEach(function (button) {
    button.addEventListener("click", function () {
      var tool = button.getAttribute("data-sim-tool");
      if (tool === "reset") {
        restart();
      } else if (tool === "text") {
        var text = button.getAttribute("data-text");
        sendEvent({ type: "text", text: text }, text);
      } else if (tool === "sticker") {
        if (!busy) {
          addRow("resident", el("div", "sim-bubble sticker", "🐻"));
          request(config.urls.send, {
            procedure: config.procedure,
            version: config.version,
            event: { type: "sticker" },
          });
        }
      } else if (tool === "image") {
        chooseImage(imageEvent);
      } else if (tool === "location") {
        openLocation(null);
      }
    });
  });

  // Opening the page starts the chosen procedure from the beginning.
  restart();
})();
