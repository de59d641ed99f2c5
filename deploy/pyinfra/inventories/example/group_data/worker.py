"""Worker hosts: every engine family, and the concurrency of each queue class."""

engine_families = ["images", "data", "pdf", "svg", "markup", "office", "ebooks", "ocr", "media"]
engine_families += ["chromium"]
worker_queues = {
    "light": {"processes": 2, "threads": 2, "metrics_port": 9181, "memory_max": "2G"},
    "office": {"processes": 1, "threads": 1, "metrics_port": 9182, "memory_max": "3G"},
    "media": {"processes": 1, "threads": 1, "metrics_port": 9183, "memory_max": "3G"},
}
