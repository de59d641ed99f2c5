"""Task failures in plain words for people (the API keeps its codes and messages): a sentence
for the codes people meet most, the task's own message after it."""

from __future__ import annotations

SENTENCES = {
    "CONVERSION_FAILED": "The file could not be converted: it may be damaged or not the kind"
    " of file its name says.",
    "INVALID_INPUT_FILE": "The file could not be read: it may be damaged or not the kind of"
    " file its name says.",
    "INVALID_OPTIONS": "One of the options does not fit this conversion.",
    "ENGINE_LIMIT": "The conversion needed more memory, time or space than this appliance allows.",
    "ENGINE_CRASHED": "The converter stopped unexpectedly on this file.",
    "ENGINE_UNAVAILABLE": "The converter this needs is not running on this appliance.",
    "NO_TEXT_FOUND": "No text was found in the file.",
    "INVALID_PASSWORD": "The password does not open the PDF.",
    "INVALID_CONVERSION_TYPE": "This appliance cannot convert this kind of file to that format.",
    "TIMEOUT": "The conversion took too long and was stopped.",
    "CANCELLED": "The conversion was cancelled.",
    "INPUT_TASK_FAILED": "An earlier step failed.",
    "FILE_TOO_LARGE": "The file is larger than this appliance accepts.",
    "UNSUPPORTED_FILE": "The file's contents are not a format this appliance reads.",
    "QUOTA_EXCEEDED": "Your conversion allowance is used up for now.",
    "INTERNAL_ERROR": "Something went wrong on the appliance; the operator can see why in its"
    " logs.",
}


def plain_words(code: str | None, message: str | None) -> str:
    sentence = SENTENCES.get(code or "")
    detail = (message or "").strip()
    if sentence and detail and detail.rstrip(".") not in sentence:
        return f"{sentence} ({detail.rstrip('.')}.)"
    return sentence or detail or "The conversion failed."
