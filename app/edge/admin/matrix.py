"""The operator's source matrix (app/usecases/matrix_view.py), as the wiring hands it to the admin API."""

from app.usecases.matrix_view import source_matrix, stream_row

__all__ = ["source_matrix", "stream_row"]
