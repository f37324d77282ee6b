"""Hostile image links and a dead network through the notebooks' public entry points (amzkit.app.runners).

Each case runs 01 (and then 02, 03) as a notebook does, and asserts on the message the user gets (what
happened, which file holds the details, what to do) and on what is written. Everything stays on 127.0.0.1:
a port bound but never listening stands for refused connections, *.invalid hosts with a resolver that knows
none of them (patched: it answers at once) for DNS with Internet off. Nothing depends on timing.
(The lead merges this file into tests/test_bad_inputs.py.)
"""

from __future__ import annotations

import http.server
import socket
import threading
import zlib
from pathlib import Path

import pandas as pd
import pytest

from amzkit.app import runners
from amzkit.app.demo import make_demo
from amzkit.app.parameters import check_parameters, stage_parameters

BOMB_BYTES = 64 * 1024 * 1024  # decoded; over the 20 MB default byte limit, while ~65 KB are sent


def gzip_bomb(size: int = BOMB_BYTES) -> bytes:
    packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(size >> 20)) + packer.flush()


@pytest.fixture(scope="module")
def bomb_server():
    """A local server whose /bomb.jpg is a gzip bomb (Content-Encoding: gzip, with and without a length)."""
    body = gzip_bomb()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Encoding", "gzip")
            if self.path == "/bomb.jpg":
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client stops reading past its limit
                pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def offline(monkeypatch):
    """Links nobody answers: i -> a refused 127.0.0.1 port or an unresolvable *.invalid host."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        yield lambda i: f"{dead}/{i}.jpg" if i % 2 else f"http://m{i % 3}.media-amazon.invalid/images/{i}.jpg"


def competition(folder: Path, links=None) -> Path:
    """The demo competition (40 train, 20 test rows) in `folder`, its image links replaced by links(i) when given."""
    files = make_demo(folder, n_train=40, n_test=20, seed=3)
    if links is not None:
        for path in (files.train_csv, files.test_csv):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            frame["image_link"] = [links(i) for i in range(len(frame))]
            frame.to_csv(path, index=False)
    return files.train_csv.parent


def notebook(stage: str, data_dir: Path, work_dir: Path, **params) -> runners.Context:
    """What a notebook's first cells do: its parameters (defaults + `params`) checked, then setup."""
    values = {**stage_parameters(stage), "data_dir": str(data_dir), "work_dir": str(work_dir), **params}
    return runners.setup(check_parameters(values, stage), stage)


def fetch_table(work_dir: Path, run: str, split: str) -> pd.DataFrame:
    return pd.read_csv(work_dir / "01_extract" / run / f"{split}_fetch.csv", keep_default_na=False)


def test_01_with_the_network_down_stops_at_once_and_says_how_to_run_text_only(offline, tmp_path):
    data_dir = competition(tmp_path / "data", offline)
    ctx = notebook("01_extract", data_dir, tmp_path / "work", model="color-stats", text_model="tfidf-svd")
    with pytest.raises(RuntimeError) as err:
        runners.run_extract(ctx)
    message = str(err.value)
    assert message.startswith("no image could be fetched: is Internet on for this kernel?")
    assert "the first 20 image links tried (4 hosts: 127.0.0.1, m0.media-amazon.invalid" in message
    assert "all failed to connect and none answered" in message
    assert '-p model ""' in message and "-p images_offline_ok True" in message
    assert str(tmp_path / "work" / "01_extract" / "color-stats" / "train_fetch.csv") in message
    train, test = (fetch_table(tmp_path / "work", "color-stats", split) for split in ("train", "test"))
    assert len(train) == 40 and len(test) == 20, "the fetch table records every link"
    assert set(train["status"]) | set(test["status"]) == {"connection_error", "not_fetched"}
    assert not (tmp_path / "work" / "01_extract" / "color-stats" / "manifest.json").exists(), "no run is left"

    text_only = notebook("01_extract", data_dir, tmp_path / "work", model="", text_model="tfidf-svd")
    table = runners.run_extract(text_only)
    assert table.index.tolist() == ["tfidf-svd"] and table.loc["tfidf-svd", "train ok"] == 40


def test_01_refuses_links_outside_the_data_folder_and_gzip_bombs(bomb_server, tmp_path):
    hostile = {0: "../" * 16 + "etc/passwd", 1: "file:///etc/passwd", 2: "/etc/passwd",
               3: f"{bomb_server}/bomb.jpg", 4: f"{bomb_server}/bomb-nolength.jpg"}
    data_dir = competition(tmp_path / "data")
    train_csv = data_dir / "train.csv"
    frame = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    for row, link in hostile.items():
        frame.loc[row, "image_link"] = link
    frame.to_csv(train_csv, index=False)
    ctx = notebook("01_extract", data_dir, tmp_path / "work", model="color-stats", text_model="")
    table = runners.run_extract(ctx)
    assert table.loc["color-stats", "train ok"] == 40 - len(hostile)
    train = fetch_table(tmp_path / "work", "color-stats", "train")
    assert train["status"].head(5).tolist() == ["outside_data_dir"] * 3 + ["too_large"] * 2
    refused = train.head(3)
    assert refused["error"].str.contains(f"is outside the data folder {data_dir}", regex=False).all()
    assert (refused["path"] == "").all() and (refused["bytes"] == 0).all() and not refused["embedded"].any()
    assert train["error"].iloc[3:5].str.contains("over 20000000 bytes decoded from gzip").all()
    assert (train["status"].iloc[5:] == "ok").all()


def test_no_image_at_all_stops_01_then_02_skips_the_run_and_03_says_what_to_do(tmp_path, capsys):
    data_dir = competition(tmp_path / "data", lambda i: f"images/gone-{i}.jpg")  # every image link missing
    work = tmp_path / "work"
    params = {"model": "color-stats", "text_model": "tfidf-svd"}
    with pytest.raises(RuntimeError, match=r"not one of the 60 rows has an image \(train statuses: missing_file 40"):
        runners.run_extract(notebook("01_extract", data_dir, work, **params))

    runners.run_extract(notebook("01_extract", data_dir, work, images_offline_ok=True, **params))
    assert "WARNING: image run 'color-stats' has no image (0 of 60 rows" in capsys.readouterr().out

    table, results = runners.run_correlate(notebook("02_correlate", data_dir, work))
    assert set(results) == {"tfidf-svd"}, "02 analyses the text run and skips the empty image run"
    printed = capsys.readouterr().out
    assert "run 'color-stats' skipped: only 0 of 40 train rows have this embedding" in printed
    assert "01_extract/color-stats/train_fetch.csv" in printed
    with pytest.raises(ValueError, match="02_correlate has no run to analyse: run 'color-stats' skipped"):
        runners.run_correlate(notebook("02_correlate", data_dir, work, runs=["color-stats"]))

    train = notebook("03_train", data_dir, work, run_name="pca_of_nothing", embeddings=["color-stats:pca:4"],
                     features=["text_stats"])
    with pytest.raises(ValueError, match=r"embedding run 'color-stats': 0 of this fold's \d+ training rows have it"
                                         r".*Leave it out of -p embeddings"):
        runners.run_train(train)
    assert not (work / "03_train" / "pca_of_nothing" / "metrics.json").exists()
