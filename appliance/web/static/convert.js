// The convert page: files from drag and drop or the file chooser, the target formats every
// chosen file can reach (GET /v2/convert/formats), one job per file (POST /ui/jobs), its
// upload with the browser's progress, then its progress as server-sent events until it ends.
"use strict";

const PARALLEL = 3; // files converted at once
// Targets the width, height and quality options apply to (the image engines').
const IMAGE_FORMATS = new Set(["avif", "bmp", "gif", "heic", "heif", "jpg", "jpeg", "png", "tif", "tiff", "webp"]);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const form = document.getElementById("convert");
const drop = document.getElementById("drop");
const input = document.getElementById("files");
const select = document.getElementById("format");
const note = document.getElementById("format-note");
const start = document.getElementById("start");
const queue = document.getElementById("queue");
const zip = document.getElementById("zip");
const zipStatus = document.getElementById("zip-status");
const optionSet = document.getElementById("options");
let items = [];

function extension(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}

function element(tag, attrs, text) {
  const el = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => el.setAttribute(k, v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function addFiles(files) {
  for (const file of files) {
    const li = element("li", { class: "item" });
    const id = "p" + Math.random().toString(36).slice(2);
    li.append(element("span", { class: "name", id: id + "-name" }, file.name));
    const bar = element("progress", { max: "100", value: "0", "aria-labelledby": id + "-name" });
    const status = element("span", { class: "status", role: "status" }, "Ready");
    const links = element("span", { class: "links" });
    li.append(bar, status, links);
    queue.append(li);
    items.push({ file, li, bar, status, links, state: "ready" });
  }
  document.getElementById("empty").hidden = items.length > 0;
  refreshFormats();
}

async function outputsOf(ext) {
  const r = await fetch("/v2/convert/formats?filter[input_format]=" + encodeURIComponent(ext));
  if (!r.ok) return new Set();
  return new Set((await r.json()).data.map((row) => row.output_format));
}

async function refreshFormats() {
  const ready = items.filter((i) => i.state === "ready");
  const exts = [...new Set(ready.map((i) => extension(i.file.name)))];
  if (!exts.length) return;
  const sets = await Promise.all(exts.map(outputsOf));
  const common = [...sets.reduce((a, b) => new Set([...a].filter((x) => b.has(x))))].sort();
  const before = select.value;
  select.replaceChildren(element("option", { value: "" }, common.length ? "Choose a format" : "No common format"));
  common.forEach((f) => select.append(element("option", { value: f }, f)));
  if (common.includes(before)) select.value = before;
  select.disabled = !common.length;
  note.textContent = common.length
    ? `${common.length} formats every chosen file converts to.`
    : "These files have no output format in common: convert them in separate groups.";
  start.disabled = !common.length;
  showOptions();
}

function showOptions() {
  optionSet.hidden = !IMAGE_FORMATS.has(select.value);
}

function options() {
  const out = {};
  if (optionSet.hidden) return out;
  for (const name of ["width", "height", "quality"]) {
    const v = document.getElementById(name).value;
    if (v) out[name] = parseInt(v, 10);
  }
  return out;
}

async function postJson(url, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.message || `The appliance answered ${r.status}`);
  return data;
}

function upload(form, file, onProgress) {
  return new Promise((resolve, reject) => {
    const body = new FormData();
    Object.entries(form.parameters || {}).forEach(([k, v]) => body.append(k, v));
    body.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.url);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress((100 * e.loaded) / e.total);
    xhr.onload = () => {
      if (xhr.status < 300) return resolve();
      let message = `The upload failed (${xhr.status})`;
      try { message = JSON.parse(xhr.responseText).message || message; } catch (e) { /* not JSON */ }
      reject(new Error(message));
    };
    xhr.onerror = () => reject(new Error("The upload failed: the appliance did not answer."));
    xhr.send(body);
  });
}

function follow(jobId, onProgress) {
  return new Promise((resolve) => {
    const events = new EventSource(`/ui/jobs/${jobId}/events`);
    events.addEventListener("progress", (e) => onProgress(JSON.parse(e.data)));
    events.addEventListener("end", (e) => { events.close(); resolve(JSON.parse(e.data)); });
    // A refused stream (signed out, job deleted) is closed for good; a dropped one retries.
    events.onerror = () => events.readyState === EventSource.CLOSED && resolve({
      status: "error", files: [], error: "The page lost track of this job: see History.",
    });
  });
}

function showFiles(item, files) {
  files.forEach((f) => {
    const a = element("a", { href: f.url, download: f.filename }, `Download ${f.filename}`);
    item.links.append(a);
  });
}

function fail(item, message) {
  item.state = "error";
  item.li.classList.add("failed");
  item.status.textContent = "Failed: " + message;
}

async function convertOne(item, format, opts) {
  item.state = "running";
  try {
    item.status.textContent = "Starting";
    const job = await postJson("/ui/jobs", { filename: item.file.name, output_format: format, options: opts });
    item.status.textContent = "Uploading";
    await upload(job.upload.form, item.file, (p) => {
      item.bar.value = p;
      item.status.textContent = `Uploading ${Math.round(p)}%`;
    });
    item.bar.value = 0;
    item.status.textContent = "Converting 0%";
    const end = await follow(job.id, (view) => {
      item.bar.value = view.percent;
      item.status.textContent = `Converting ${view.percent}%`;
    });
    if (end.status !== "finished") return fail(item, end.error);
    item.state = "finished";
    item.taskId = end.task_id;
    item.bar.value = 100;
    item.status.textContent = "Done 100%";
    item.li.classList.add("done");
    showFiles(item, end.files);
  } catch (err) {
    fail(item, err.message);
  }
}

async function convertAll(event) {
  event.preventDefault();
  const format = select.value;
  if (!format) { select.focus(); return; }
  const todo = items.filter((i) => i.state === "ready");
  const opts = options();
  start.disabled = true;
  const workers = Array.from({ length: PARALLEL }, async () => {
    while (todo.length) await convertOne(todo.shift(), format, opts);
  });
  await Promise.all(workers);
  zip.hidden = items.filter((i) => i.state === "finished").length < 2;
}

async function zipAll() {
  const ids = items.filter((i) => i.state === "finished").map((i) => i.taskId);
  zip.disabled = true;
  zipStatus.textContent = "Making the zip";
  try {
    const job = await postJson("/ui/archives", { task_ids: ids });
    const end = await follow(job.id, () => {});
    if (end.status !== "finished") throw new Error(end.error);
    zipStatus.textContent = "";
    end.files.forEach((f) => zipStatus.append(element("a", { href: f.url, download: f.filename }, `Download ${f.filename}`)));
  } catch (err) {
    zipStatus.textContent = "The zip failed: " + err.message;
  } finally {
    zip.disabled = false;
  }
}

["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (e) => {
  e.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
drop.addEventListener("drop", (e) => { e.preventDefault(); addFiles(e.dataTransfer.files); });
input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
form.addEventListener("submit", convertAll);
select.addEventListener("change", showOptions);
showOptions();
zip.addEventListener("click", zipAll);
