"""The enabled engines: this list is the appliance's feature set. One line per engine."""

from __future__ import annotations

from appliance.engines import Engine
from appliance.engines.chromium import ChromiumEngine
from appliance.engines.data import DataEngine
from appliance.engines.ebooks import CalibreEngine
from appliance.engines.images import ImageEngine
from appliance.engines.markup import PandocEngine
from appliance.engines.media import FfmpegEngine
from appliance.engines.metadata import MetadataEngine
from appliance.engines.ocr import OcrEngine, PdfOcrEngine, PictureDocumentEngine
from appliance.engines.office import OfficeEngine
from appliance.engines.pdf import PdfEngine
from appliance.engines.pdfdocument import PdfDocumentEngine
from appliance.engines.pdfedit import (
    DecryptEngine,
    EmbedEngine,
    EncryptEngine,
    ExtractPagesEngine,
    FlattenEngine,
    MetadataWriteEngine,
    PdfAEngine,
)
from appliance.engines.pdftools import (
    ImagesToPdfEngine,
    MergeEngine,
    OptimizeEngine,
    PdfToPdfEngine,
    RotateEngine,
    SplitEngine,
)
from appliance.engines.thumbnail import ThumbnailEngine
from appliance.engines.vector import SvgEngine
from appliance.engines.watermark import WatermarkEngine


def enabled_engines() -> list[Engine]:
    return [
        ImageEngine(),
        SvgEngine(),
        PandocEngine(),
        FfmpegEngine(),
        OfficeEngine(),
        ChromiumEngine(),
        PdfEngine(),
        PdfDocumentEngine(),
        ImagesToPdfEngine(),
        PdfToPdfEngine(),
        SplitEngine(),
        RotateEngine(),
        MergeEngine(),
        OptimizeEngine(),
        ExtractPagesEngine(),
        PdfAEngine(),
        EncryptEngine(),
        DecryptEngine(),
        FlattenEngine(),
        EmbedEngine(),
        MetadataWriteEngine(),
        WatermarkEngine(),
        CalibreEngine(),
        OcrEngine(),
        PictureDocumentEngine(),
        PdfOcrEngine(),
        DataEngine(),
        ThumbnailEngine(),
        MetadataEngine(),
    ]
