"""Images: every one tagged with a version (no `latest`, no bare name), all Millstream images of an
overlay from one release, and an overlay's `images:` moves every one of them, the FlinkDeployment's
`spec.image` included (an upgrade that left the Flink job on the old release would go unnoticed)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.k8s_validate import build_overlay
from tests.k8s.conftest import OVERLAY_NAMES, REPO

Objs = list[dict[str, Any]]
OURS = "ghcr.io/millstream/"


def _images(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(path, image) of every `image` field of an object."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield f"{where}/{key}", value
            else:
                yield from _images(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _images(item, f"{where}/{i}")


def _all_images(objs: Objs) -> list[tuple[str, str]]:
    return [(f"{o['kind']}/{o['metadata']['name']}{p}", img) for o in objs for p, img in _images(o)]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_images_are_versioned_and_of_one_release(rendered: dict[str, Objs], overlay: str) -> None:
    images = _all_images(rendered[overlay])
    assert images
    ours = set()
    for where, image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{where}: {image} has no tag"
        assert tag != "latest" and re.match(r"\d+\.\d+", tag), f"{where}: {image} is not a version"
        if image.startswith(OURS):
            ours.add(tag)
    assert len(ours) == 1, f"{overlay}: Millstream images of several releases: {sorted(ours)}"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_an_overlays_images_move_every_millstream_image(tmp_path: Path, overlay: str) -> None:
    k8s = tmp_path / "k8s"
    shutil.copytree(REPO / "k8s", k8s)
    kustomization = k8s / "overlays" / overlay / "kustomization.yaml"
    doc = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    for entry in doc["images"]:
        entry["newTag"] = "9.9.9"
    kustomization.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    images = _all_images(build_overlay(k8s / "overlays" / overlay))
    ours = [(where, image) for where, image in images if image.startswith(OURS)]
    assert len(ours) >= 4
    if overlay == "prod":
        assert any(where.startswith("FlinkDeployment/") for where, _ in ours), "the Flink job's image"
    stale = [(where, image) for where, image in ours if not image.endswith(":9.9.9")]
    assert not stale, f"images the overlay's `images:` does not reach: {stale}"
