"""`python -m sweep data sync | import | info` and describe_market."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from _data_frames import candles, funding, need_shared, write_dataset
from fakes.hl_server import FakeHyperliquid
from rich.console import Console
from typer.testing import CliRunner

from harness.sources import load_market
from sweep import data_cli

ROOT = Path(__file__).resolve().parents[1]


def app() -> typer.Typer:
    a = typer.Typer()
    data_cli.register(a)

    @a.callback()
    def _root() -> None:  # keep `data` a sub-command even with one group registered
        pass

    return a


def invoke(*args: str):
    return CliRunner().invoke(app(), list(args), catch_exceptions=False)


def table_rows(output: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("│")[1:-1]] for line in output.splitlines()
            if line.startswith("│")]


def test_import_then_info_lists_172_coins(tmp_path):
    shared = need_shared()
    ds = tmp_path / "ds"  # the 1h candles and funding only, to keep the test quick
    ds.mkdir()
    for name in ("candles_1h.parquet", "funding_1h.parquet"):
        (ds / name).symlink_to(shared / name)
    store = tmp_path / "s"
    result = invoke("data", "import", str(ds), "--store", str(store))
    assert result.exit_code == 0, result.output
    assert "696,160" in result.output and "1,555,636" in result.output
    result = invoke("data", "info", "--store", str(store))
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert len(rows) == 172 and "172 coins" in result.output
    btc = next(r for r in rows if r[0] == "BTC")
    assert btc[1].startswith("2024-09-04") and btc[2] == "2025-03-31 23:00"
    assert btc[6] == "100.0"  # funding coverage %


def test_info_on_a_dataset_and_the_embedded_default(tmp_path, monkeypatch):
    c = candles(n=30).drop(index=[3, 4])
    ds = write_dataset(tmp_path / "ds", c, funding(n=15))
    result = invoke("data", "info", "--data", str(ds))
    assert result.exit_code == 0
    rows = {r[0]: r for r in table_rows(result.output)}
    assert rows["BTC"][3:] == ["28", "1", "2", "50.0"]  # bars, gaps, missing, funding %
    assert rows["ETH"][3:] == ["30", "0", "0", "50.0"]
    monkeypatch.chdir(tmp_path)  # ./data is empty here: the embedded default is shown
    result = invoke("data", "info")
    assert result.exit_code == 0 and "SYNTHETIC" in result.output
    assert len(table_rows(result.output)) >= 8


def test_sync_command_prints_what_it_added(tmp_path, monkeypatch):
    server = FakeHyperliquid(coins=("BTC", "ETH"), candle_window=300)
    server.funding_since_ms = server.now_ms - 300 * 3_600_000  # one funding page per coin
    monkeypatch.setattr("harness.hl_sync.time.time", lambda: server.now_ms / 1000)
    with server:
        result = invoke("data", "sync", "--coins", "BTC,ETH", "--base-url", server.url,
                        "--store", str(tmp_path))
        assert result.exit_code == 0, result.output
        rows = {r[0]: r for r in table_rows(result.output)}
        assert rows["BTC"][1] == "299" and rows["ETH"][1] == "299"
        result = invoke("data", "sync", "--coins", "BTC", "--no-funding", "--base-url",
                        server.url, "--store", str(tmp_path))
        assert table_rows(result.output)[0][1:3] == ["0", "0"]
    assert "0 candles and 0 funding rows added" in result.output


def test_describe_market_table(tmp_path):
    m = load_market("embedded", store=tmp_path)
    table = data_cli.describe_market(m)
    assert table.row_count == m.n_coins and "SYNTHETIC" in str(table.title)
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "BTC" in text and "fingerprint" in text


def test_errors_exit_nonzero_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sweep", "data", "import", str(tmp_path / "nowhere"),
         "--store", str(tmp_path / "s")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not a folder" in lines[0]
