"""Inventory import and export (docs/inventory.md)."""

from core.inventory.exporter import export_document, export_text
from core.inventory.importer import ImportResult, import_file, import_rows

__all__ = ["ImportResult", "export_document", "export_text", "import_file", "import_rows"]
