// The page of `sonofm serve`: open a file, run the chosen model on the shown frame, draw its result.
// No build step, no libraries. window.sonofm holds the page's state (for the console and the browser test).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, upload: null, frame: 0, clicks: [], box: null, pending: 0, latest: 0, results: 0 };
window.sonofm = state;

function model() {
  return state.config.models.find((m) => m.name === $("model").value);
}

async function call(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json", "X-Sonofm": "1" }, body: JSON.stringify(body),
  };
  return answer(await fetch(path, options));
}

async function answer(response) {
  const data = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

// Every request goes through busy(): the status line, data-state for tests, errors shown on the page.
async function busy(message, work) {
  state.pending += 1;
  clearError();
  document.body.dataset.state = "busy";
  $("status").textContent = message;
  try {
    return await work();
  } catch (error) {
    showError(error.message);
    return null;
  } finally {
    state.pending -= 1;
    if (state.pending === 0) {
      document.body.dataset.state = $("error").hidden ? "ready" : "error";
      $("status").textContent = "";
    }
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// Opening a file

async function openFile(file) {
  clearError();
  const limit = state.config.max_upload_bytes;
  if (file.size > limit) {
    showError(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB, over the limit of ${(limit / 2 ** 20).toFixed(1)} MB`);
    document.body.dataset.state = "error";
    return;
  }
  const info = await busy(`uploading ${file.name}`, async () => answer(await fetch(
    `/api/upload?name=${encodeURIComponent(file.name)}`,
    { method: "POST", headers: { "Content-Type": "application/octet-stream", "X-Sonofm": "1" }, body: file })));
  if (!info) return;
  state.upload = info;
  state.frame = 0;
  $("frame").max = info.frames - 1;
  $("frame").value = 0;
  $("frame-row").hidden = info.frames < 2;
  $("drop").hidden = true;
  $("stage").hidden = false;
  describeFile();
  await showFrame();
}

function describeFile() {
  const info = state.upload;
  const spacing = info.pixel_size_mm === null ? "unknown (areas in px²)" : `${info.pixel_size_mm} mm (DICOM)`;
  const rows = [["file", info.name], ["kind", info.kind], ["size", `${info.width} × ${info.height} px`],
    ["frames", String(info.frames)], ["pixel spacing", spacing]];
  $("file-info").replaceChildren(...rows.flatMap(([term, value]) => [element("dt", term), element("dd", value)]));
}

async function showFrame() {
  $("frame-label").textContent = `${state.frame + 1} / ${state.upload.frames}`;
  state.clicks = [];
  state.box = null;
  clearResult();
  const base = $("base");
  const loaded = new Promise((resolve) => { base.onload = resolve; base.onerror = resolve; });
  base.src = `/api/uploads/${state.upload.upload}/frames/${state.frame}`;
  await loaded;
  drawMarks();
  if ($("show-fan").checked) await showFan();
  await runModel();
}

// Running the model

async function runModel() {
  const chosen = model();
  setTaskControls(chosen);
  if (!state.upload) return;
  const target = { model: chosen.name, upload: state.upload.upload, frame: state.frame };
  if (chosen.task === "sam") {
    const done = await busy("computing the image embedding (once per image)", () => call("/api/embed", target));
    if (done) $("status").textContent = "click on the image or drag a box";
    if (state.clicks.length || state.box) await prompt();
    return;
  }
  render(await busy(`running ${chosen.name}`, () => call("/api/predict", target)));
}

async function automatic() {
  const target = { model: model().name, upload: state.upload.upload, frame: state.frame };
  state.clicks = [];
  state.box = null;
  drawMarks();
  render(await busy("running the class prompter", () => call("/api/predict", target)));
}

async function prompt() {
  const chosen = model();
  if (!state.upload || chosen.task !== "sam") return;
  drawMarks();
  if (!state.clicks.length && !state.box) {
    clearResult();
    return;
  }
  const request = { model: chosen.name, upload: state.upload.upload, frame: state.frame,
    clicks: state.clicks, box: state.box };
  const number = ++state.latest;
  const result = await busy("segmenting", () => call("/api/prompt", request));
  if (number === state.latest) render(result);
}

function setTaskControls(chosen) {
  const sam = chosen.task === "sam";
  $("marks").classList.toggle("active", sam);
  $("sam-help").hidden = !sam;
  $("clear").hidden = !sam;
  $("auto").hidden = !(sam && chosen.automatic);
  $("split-row").hidden = chosen.task !== "enhance";
  $("opacity-row").hidden = chosen.task === "enhance";
}

// Results

function clearResult() {
  $("overlay").hidden = true;
  $("after").hidden = true;
  $("download").hidden = true;
  $("result").replaceChildren();
}

function render(result) {
  if (!result) return;
  clearResult();
  if (result.kind === "classes") renderClasses(result);
  else if (result.kind === "mask") renderMask(result);
  else renderRestored(result);
  state.results += 1;
  document.body.dataset.results = String(state.results);
}

function renderClasses(result) {
  showOverlay(result.gradcam);
  const rows = Object.entries(result.probabilities).map(([name, p]) => {
    const bar = element("span", "");
    bar.className = "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    const row = element("tr", "", [element("td", name), element("td", p.toFixed(4)), element("td", "", [bar])]);
    row.dataset.class = name;
    row.classList.toggle("predicted", name === result.predicted);
    return row;
  });
  $("result").replaceChildren(
    element("h2", `${result.predicted}`),
    element("table", "", [element("tbody", "", rows)]),
    element("p", `Overlay: Grad-CAM of ${result.predicted}. ${seconds(result)}`));
}

function renderMask(result) {
  showOverlay(result.overlay);
  const items = result.legend.map((entry) => {
    const swatch = element("span", "");
    swatch.className = "swatch";
    swatch.style.background = entry.colour;
    const amount = entry.unit === "mm²" ? entry.area.toFixed(1) : String(entry.pixels);
    const item = element("li", "", [swatch, element("span", ` ${entry.name}: ${amount} ${entry.unit}`)]);
    item.dataset.class = entry.name;
    return item;
  });
  const extra = result.confidence === undefined ? "" : `mean confidence ${result.confidence.toFixed(3)}. `;
  $("result").replaceChildren(element("ul", "", items), element("p", extra + seconds(result)));
  const link = $("download");
  link.href = result.mask;
  link.download = `${stem(state.upload.name)}_f${state.frame}_${result.model}_mask.png`;
  link.hidden = false;
}

function renderRestored(result) {
  $("after").src = result.restored;
  $("after").hidden = false;
  split();
  $("result").replaceChildren(element("p", `Left: the input. Right: restored. ${seconds(result)}`));
}

function showOverlay(source) {
  $("overlay").src = source;
  $("overlay").hidden = false;
  $("overlay").style.opacity = $("opacity").value / 100;
}

function split() {
  $("after").style.clipPath = `inset(0 0 0 ${$("split").value}%)`;
}

function seconds(result) {
  const cached = result.embedding_cached === undefined ? "" : (result.embedding_cached ? ", embedding cached" : "");
  return `${(1000 * result.seconds).toFixed(0)} ms on the server${cached}.`;
}

async function showFan() {
  if (!$("show-fan").checked || !state.upload) {
    $("fan").hidden = true;
    return;
  }
  const fan = await busy("finding the fan", () => call("/api/fan", { upload: state.upload.upload, frame: state.frame }));
  if (!fan) return;
  $("fan").src = fan.overlay;
  $("fan").hidden = false;
  const amount = fan.unit === "mm²" ? fan.area.toFixed(1) : String(fan.pixels);
  $("fan").title = `fan: ${amount} ${fan.unit}`;
  $("status").textContent = `fan area: ${amount} ${fan.unit}`;
}

// Clicks and boxes on the image (A-SAM)

function imagePoint(event) {
  const rect = $("base").getBoundingClientRect();
  const x = Math.floor((event.clientX - rect.left) * state.upload.width / rect.width);
  const y = Math.floor((event.clientY - rect.top) * state.upload.height / rect.height);
  return [Math.min(Math.max(x, 0), state.upload.width - 1), Math.min(Math.max(y, 0), state.upload.height - 1)];
}

let drag = null;

function onPointerDown(event) {
  if (model().task !== "sam" || !state.upload) return;
  event.preventDefault();
  drag = { start: imagePoint(event), x: event.clientX, y: event.clientY, moved: false };
}

function onPointerMove(event) {
  if (!drag) return;
  drag.moved = drag.moved || Math.hypot(event.clientX - drag.x, event.clientY - drag.y) > 5;
  if (drag.moved) drawMarks(boxOf(drag.start, imagePoint(event)));
}

function onPointerUp(event) {
  if (!drag) return;
  const start = drag.start;
  const moved = drag.moved;
  drag = null;
  if (moved) state.box = boxOf(start, imagePoint(event));
  else state.clicks.push([...start, event.button === 2 || event.shiftKey ? 0 : 1]);
  prompt();
}

function boxOf([x0, y0], [x1, y1]) {
  return [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
}

function drawMarks(provisional) {
  const canvas = $("marks");
  const rect = $("base").getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(rect.width * ratio);
  canvas.height = Math.round(rect.height * ratio);
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.upload) return;
  const sx = canvas.width / state.upload.width;
  const sy = canvas.height / state.upload.height;
  const box = provisional || state.box;
  if (box) {
    context.strokeStyle = "#ffd500";
    context.lineWidth = 2 * ratio;
    context.strokeRect(box[0] * sx, box[1] * sy, (box[2] - box[0] + 1) * sx, (box[3] - box[1] + 1) * sy);
  }
  for (const [x, y, label] of state.clicks) {
    context.fillStyle = label ? "#22dd55" : "#ff3344";
    context.strokeStyle = "#000";
    context.lineWidth = ratio;
    context.beginPath();
    context.arc((x + 0.5) * sx, (y + 0.5) * sy, 5 * ratio, 0, 2 * Math.PI);
    context.fill();
    context.stroke();
  }
}

// Helpers and wiring

function element(tag, text, children = []) {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  node.append(...children);
  return node;
}

function stem(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

let frameTimer = null;

async function start() {
  try {
    state.config = await call("/api/config");
  } catch (error) {
    showError(error.message);
    document.body.dataset.state = "error";
    return;
  }
  $("model").replaceChildren(...state.config.models.map((m) => {
    const option = element("option", `${m.name} (${m.task})`);
    option.value = m.name;
    return option;
  }));
  $("file").accept = state.config.extensions.join(",");
  $("file").addEventListener("change", () => { if ($("file").files.length) openFile($("file").files[0]); });
  $("model").addEventListener("change", () => {
    state.clicks = [];
    state.box = null;
    clearResult();
    drawMarks();
    runModel();
  });
  $("opacity").addEventListener("input", () => { $("overlay").style.opacity = $("opacity").value / 100; });
  $("split").addEventListener("input", split);
  $("auto").addEventListener("click", automatic);
  $("clear").addEventListener("click", () => { state.clicks = []; state.box = null; prompt(); });
  $("show-fan").addEventListener("change", showFan);
  $("frame").addEventListener("input", () => {
    clearTimeout(frameTimer);
    frameTimer = setTimeout(() => { state.frame = Number($("frame").value); showFrame(); }, 150);
  });
  const marks = $("marks");
  marks.addEventListener("pointerdown", onPointerDown);
  window.addEventListener("pointermove", onPointerMove);
  window.addEventListener("pointerup", onPointerUp);
  marks.addEventListener("contextmenu", (event) => event.preventDefault());
  window.addEventListener("resize", () => drawMarks());
  document.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dropping"); });
  document.addEventListener("dragleave", () => document.body.classList.remove("dropping"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    document.body.classList.remove("dropping");
    if (event.dataTransfer.files.length) openFile(event.dataTransfer.files[0]);
  });
  setTaskControls(model());
  document.body.dataset.state = "ready";
}

start();
