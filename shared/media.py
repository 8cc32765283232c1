"""Where generated images live on disk: written by stage 6, served by the dashboard."""

from __future__ import annotations

from pathlib import Path


def image_path(media_dir: Path, site_id: int, content_id: int, image_id: int) -> Path:
    """The PNG of one image, under the media root (database ids only, never user text)."""
    return media_dir / str(site_id) / str(content_id) / f"{image_id}.png"
