"""The distributed dataflow is generated from dataflow.yml and places every node."""

from __future__ import annotations

import pytest
import yaml

from pipeline import deploy


def test_committed_distributed_dataflow_is_the_generated_one():
    assert deploy.TARGET.read_text() == deploy.generate(deploy.SOURCE.read_text()), (
        "dataflow.distributed.yml is stale: run `python -m pipeline.deploy`")


def test_every_node_is_placed_and_keeps_its_inputs():
    plain = {n["id"]: n for n in yaml.safe_load(deploy.SOURCE.read_text())["nodes"]}
    split = {n["id"]: n for n in yaml.safe_load(deploy.generate(deploy.SOURCE.read_text()))["nodes"]}
    assert split.keys() == plain.keys()
    for node_id, node in split.items():
        assert node["deploy"] == {"machine": deploy.PLACEMENT[node_id]}
        assert node["inputs"] == plain[node_id]["inputs"]
        assert node.get("outputs") == plain[node_id].get("outputs")
        # a relative script path would be looked up in the daemon's _work folder
        assert node["path"] == "python"
        assert node["args"] == "-m " + plain[node_id]["path"].removesuffix(".py").replace("/", ".")


def test_sound_card_side_on_the_board_models_on_the_server():
    assert set(deploy.nodes_on(deploy.BOARD)) == {"microphone", "vad", "speaker"} | (
        {"view"} & set(deploy.nodes_on(deploy.BOARD)))
    assert {"asr", "llm", "llm-server", "segmenter", "tts"} <= set(deploy.nodes_on(deploy.SERVER))


def test_a_node_without_a_machine_is_refused():
    text = deploy.SOURCE.read_text() + "\n  - id: camera\n    path: nodes/camera.py\n"
    with pytest.raises(deploy.PlacementError, match="camera"):
        deploy.generate(text)


def test_a_hand_placed_dataflow_is_refused():
    with pytest.raises(deploy.PlacementError, match="deploy"):
        deploy.generate("nodes:\n  - id: vad\n    deploy: {machine: board}\n    path: nodes/vad.py\n")


def test_check_reports_a_stale_file(tmp_path, monkeypatch):
    monkeypatch.setattr(deploy, "TARGET", tmp_path / "dataflow.distributed.yml")
    assert deploy.main(["--check"]) == 1
    assert deploy.main([]) == 0
    assert deploy.main(["--check"]) == 0
