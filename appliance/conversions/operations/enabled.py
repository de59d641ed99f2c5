"""The enabled task operations: this list is the API's task model. One line per operation.

The job graph, ``GET /v2/operations``, the single-task routes (``POST /v2/<operation>``),
the OpenAPI schema and the metrics' operation labels are all built from it.
"""

from __future__ import annotations

from appliance.conversions.operation import Operation
from appliance.conversions.operations.archive import Archive
from appliance.conversions.operations.capture_website import CaptureWebsite
from appliance.conversions.operations.convert import Convert
from appliance.conversions.operations.export_s3 import ExportS3
from appliance.conversions.operations.export_url import ExportUrl
from appliance.conversions.operations.extract_pages import ExtractPages
from appliance.conversions.operations.import_base64 import ImportBase64
from appliance.conversions.operations.import_s3 import ImportS3
from appliance.conversions.operations.import_upload import ImportUpload
from appliance.conversions.operations.import_url import ImportUrl
from appliance.conversions.operations.merge import Merge
from appliance.conversions.operations.metadata import Metadata
from appliance.conversions.operations.metadata_write import MetadataWrite
from appliance.conversions.operations.optimize import Optimize
from appliance.conversions.operations.pdf_a import PdfA
from appliance.conversions.operations.pdf_decrypt import PdfDecrypt
from appliance.conversions.operations.pdf_embed import PdfEmbed
from appliance.conversions.operations.pdf_encrypt import PdfEncrypt
from appliance.conversions.operations.pdf_flatten import PdfFlatten
from appliance.conversions.operations.pdf_ocr import PdfOcr
from appliance.conversions.operations.rotate_pages import RotatePages
from appliance.conversions.operations.split_pages import SplitPages
from appliance.conversions.operations.thumbnail import Thumbnail
from appliance.conversions.operations.watermark import Watermark

ENABLED: tuple[Operation, ...] = (
    ImportUpload(),
    ImportUrl(),
    ImportBase64(),
    ImportS3(),
    Convert(),
    Merge(),
    Optimize(),
    SplitPages(),
    RotatePages(),
    ExtractPages(),
    PdfA(),
    PdfOcr(),
    PdfEncrypt(),
    PdfDecrypt(),
    PdfFlatten(),
    PdfEmbed(),
    Watermark(),
    Thumbnail(),
    CaptureWebsite(),
    Metadata(),
    MetadataWrite(),
    Archive(),
    ExportUrl(),
    ExportS3(),
)
# by name, in the order above (which error messages and the operations list follow)
OPERATIONS: dict[str, Operation] = {op.name: op for op in ENABLED}
