"""``python -m nlp_seg`` runs the ``nlpseg`` command."""

from nlp_seg.cli import app

if __name__ == "__main__":
    app(prog_name="nlpseg")
