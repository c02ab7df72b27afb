"""A FastFlyer app configures logging from its own settings when it is built, not from the
environment at import: where the files go, their levels and format are the app's."""

from __future__ import annotations

import json
from pathlib import Path

from loguru import logger as loguru_logger
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.settings import load_settings
from fastkit.logging import log_directory, logger
from fastkit.request_id import bind_request_id

from conftest import DEMO


def test_the_apps_settings_decide_where_and_how_it_logs(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    FlyerAPI(app_path=DEMO, settings=load_settings(
        warn_unknown=False, log_path=str(chosen), file_log_level="debug", log_json=True))
    logger.debug("detail for the file")
    assert log_directory() == str(chosen)
    lines = [json.loads(line) for line in (chosen / "fastkit.log").read_text().splitlines()]
    assert "detail for the file" in [line["record"]["message"] for line in lines]
    assert not (tmp_path / "logs").exists()  # the environment's flyer_log_path is not used


def test_the_applications_own_lines_are_masked_and_carry_the_request_id_once_served(
        tmp_path: Path) -> None:
    app = FlyerAPI(app_path=DEMO, settings=load_settings(
        warn_unknown=False, log_path=str(tmp_path / "served")))
    with TestClient(app) as client:
        assert client.get("/health_check").status_code == 200
        with bind_request_id("rid-app"):
            loguru_logger.info("app line Authorization: Bearer zqApp")
    text = (tmp_path / "served" / "fastkit.log").read_text()
    (line,) = [line for line in text.splitlines() if "app line" in line]
    assert "zqApp" not in line
    assert "rid-app" in line


def test_a_second_app_replaces_the_first_apps_sinks(tmp_path: Path) -> None:
    FlyerAPI(app_path=DEMO, settings=load_settings(warn_unknown=False,
                                                   log_path=str(tmp_path / "one")))
    logger.info("to one")
    FlyerAPI(app_path=DEMO, settings=load_settings(warn_unknown=False,
                                                   log_path=str(tmp_path / "two")))
    logger.info("to two")
    assert "to two" not in (tmp_path / "one" / "fastkit.log").read_text()
    assert "to two" in (tmp_path / "two" / "fastkit.log").read_text()
    assert "to one" not in (tmp_path / "two" / "fastkit.log").read_text()
