"""End to end through the browser: a real `mlflow server`, a tiny search tracked in it, and the
MLflow 3.17 UI rendered by headless Chromium (issue 5, "Done when").

What a user sees is checked from the live DOM, not from MLflow's Python API:
- the experiment's runs table shows the search's parent run with an expander; clicking it shows
  every trial run indented under it (and the parent run's page lists them as child runs);
- the parent run's artifacts page lists `pareto.png` and the image loads at the logged size;
- the runs the UI shows for the search filter `tags.pareto = 'true'` (the `searchFilter` URL
  parameter the search box writes) are exactly the front, by run id, and no other trial shows;
- the search mixes families: the filter `tags.family = '<family>'` shows exactly that family's
  trials.
The REST API (`MlflowClient.search_runs`) is asked the same filter, so the UI and the store must
agree. The browser is the system Chromium driven by Playwright (`tests.browser`, no browser
download); each check gets a fresh page, and a failed check saves a screenshot beside the test's
temporary files.
"""

from __future__ import annotations

import re
import struct
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from experiments import tracking
from experiments.search import SearchOptions, run_search
from lrunet import metrics as M
from tests import browser as web
from tests import mlflow_server as servers
from tests.conftest import MIXED_SPACE, write_space

if TYPE_CHECKING:
    from playwright.sync_api import Page

SKIP_REASON = web.skip_reason()
PARETO_FILTER = "tags.pareto = 'true'"
NUM_TRIALS = 6

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite store and proxied artifacts in a temp folder;
    stopped (with its worker) however the tests end."""
    proc, url = servers.start(tmp_path_factory.mktemp("mlflow_server"))
    try:
        yield url
    finally:
        servers.stop(proc)


@pytest.fixture(scope="module")
def searched(mlflow_server, tmp_path_factory, ray_local):
    """Six trials of three families on digits (ASHA, two at a time) tracked in the server."""
    d = tmp_path_factory.mktemp("ui_search")
    result = run_search(
        SearchOptions(
            space=str(write_space(d, MIXED_SPACE, name="mixed.yaml")),
            tracking_uri=mlflow_server,
            storage_path=str(d / "ray"),
            experiment_name="ui-e2e",
            num_samples=NUM_TRIALS,
            max_concurrent=2,
            searcher="random",
            scheduler="asha",
            seed=3,
            verbose=0,
        )
    )
    return result, tracking.client_for(mlflow_server)


@pytest.fixture(scope="module")
def browser():
    """The system Chromium, headless, driven by Playwright; one per module, a fresh context and
    page per check."""
    with web.launch() as b:
        yield b


# -- page helpers --------------------------------------------------------------------------------


def _run_links_js(exp_id: str) -> str:
    """JS: [run_id, link text, left x] of every link to a run page of this experiment."""
    pattern = f"^#/experiments/{exp_id}/runs/([0-9a-f]{{32}})$".replace("/", r"\/")
    return f"""[...document.querySelectorAll('a[href]')]
        .map(a => [a.getAttribute('href').match(/{pattern}/), a])
        .filter(([m]) => m)
        .map(([m, a]) => [m[1], a.innerText.trim(), a.getBoundingClientRect().left])"""


def _expand(page: Page, run_id: str) -> bool:
    """Click the expander of a run's row in the runs table; False when the row has none."""
    row = page.locator("[role=row]").filter(has=page.locator(f'a[href$="/runs/{run_id}"]'))
    button = row.locator('button[data-component-id*="runnamecellrenderer"]')
    if button.count() == 0:
        return False
    button.first.click()
    return True


def _query(**params: str) -> str:
    """URL query as the UI writes it (the search box's text goes to `searchFilter`)."""
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "pareto.png is not a PNG"
    return struct.unpack(">II", data[16:24])


# -- the test ------------------------------------------------------------------------------------


def test_ui_shows_nested_trials_pareto_plot_and_front(searched, browser, tmp_path):
    result, client = searched
    exp = client.get_experiment_by_name(result.experiment_name)
    exp_id, parent_id = exp.experiment_id, result.parent_run_id
    parent = client.get_run(parent_id)
    trials = {r.info.run_id: r for r in tracking.trial_runs(client, parent_id, exp_id)}
    front = {m.run_id: m.arch for m in result.front.members}

    # the store: what the UI must show
    assert len(trials) == NUM_TRIALS
    assert front and set(front) <= set(trials)
    rest_front = {r.info.run_id for r in client.search_runs([exp_id], PARETO_FILTER)}
    assert rest_front == set(front), "REST filter and the search's front disagree"
    others = set(trials) - set(front)
    assert others, "every trial landed on the front: the filter check would prove nothing"

    pages = web.Pages(browser, result.tracking_uri, tmp_path)
    links = _run_links_js(exp_id)
    names = {rid: r.info.run_name for rid, r in trials.items()}
    parent_name = parent.info.run_name

    # 1. the experiment page (the "Model training" view): the parent run, collapsed, expands to
    #    show every trial indented under it
    with pages.page("experiment") as page:
        pages.open(
            page,
            f"/experiments/{exp_id}?workflowType=machine_learning",
            f"({links}).some(([id]) => id === '{parent_id}')",
            "experiment",
        )
        rows = {rid: (text, x) for rid, text, x in pages.settled(page, links)}
        assert set(rows) == {parent_id}, f"trials should be nested, not top level: {rows}"
        assert rows[parent_id][0] == parent_name
        assert _expand(page, parent_id), "no expander on the parent row"
        pages.wait(page, f"({links}).length > 1", "experiment-expanded")
        rows = {rid: (text, x) for rid, text, x in pages.settled(page, links)}
        pages.shot(page, "experiment-expanded")
        assert set(rows) == {parent_id, *trials}, f"expanded rows {rows} != parent + trials"
        for rid in trials:
            assert rows[rid][0] == names[rid]
            assert rows[rid][1] > rows[parent_id][1], f"trial {rid} is not indented under parent"
        assert f"{len(trials) + 1} matching runs" in web.text(page)

    # 2. the parent run's page lists its child runs; its artifacts page shows the Pareto plot
    with pages.page("parent-run") as page:
        pages.open(
            page,
            f"/experiments/{exp_id}/runs/{parent_id}",
            "/Child runs/.test(document.body.innerText)",
            "parent-run",
        )
        children = {rid: text for rid, text, _ in pages.settled(page, links)}
        assert children == names, "the parent run page's child runs differ from the trials"

        png = Path(client.download_artifacts(parent_id, "pareto.png", str(tmp_path)))
        width, height = _png_size(png.read_bytes())
        img_ready = (
            "[...document.querySelectorAll('img')].some(i => i.complete && i.naturalWidth > 0"
            " && i.src.startsWith('blob:'))"
        )
        pages.open(
            page,
            f"/experiments/{exp_id}/runs/{parent_id}/artifacts/pareto.png",
            f"document.querySelector('[data-testid=artifact-tree-node]') && {img_ready}",
            "artifacts",
        )
        listed = set(
            page.evaluate(
                "[...document.querySelectorAll('[data-testid=artifact-tree-node]')]"
                ".map(n => n.getAttribute('artifact-name'))"
            )
        )
        assert {"pareto.png", "pareto_front.csv", "hypervolume_over_time.png"} <= listed, listed
        shown = page.evaluate(
            "[...document.querySelectorAll('img')].filter(i => i.src.startsWith('blob:'))"
            ".map(i => [i.naturalWidth, i.naturalHeight])"
        )
        assert [width, height] in shown, f"pareto.png ({width}x{height}) not shown: {shown}"

    # 3. the search filter: sorted by accuracy the UI lists matching runs flat; they must be
    #    exactly the front (by run id), each named by its architecture
    query = _query(
        searchFilter=PARETO_FILTER, orderByKey=f"metrics.`{M.VAL_ACC}`", orderByAsc="false"
    )
    with pages.page("pareto-filter") as page:
        pages.open(
            page,
            f"/experiments/{exp_id}/runs?{query}",
            f"/matching runs?/.test(document.body.innerText) && ({links}).length > 0",
            "pareto-filter",
        )
        shown = {rid: text for rid, text, _ in pages.settled(page, links)}
        pages.shot(page, "pareto-filter")
        assert set(shown) == set(front), (
            f"UI filter shows {sorted(shown)}, the front is {sorted(front)}, "
            f"non-front shown: {sorted(set(shown) & others)}"
        )
        assert set(shown) == rest_front
        search_box = page.evaluate("[...document.querySelectorAll('input')].map(i => i.value)")
        assert PARETO_FILTER in search_box, (
            f"the search box does not hold the filter: {search_box}"
        )
        for rid, arch in front.items():
            assert shown[rid] == arch == names[rid]
        n = len(front)
        assert re.search(rf"\b{n} matching runs?\b", web.text(page)), "wrong matching-run count"
        text = web.text(page)
        for rid in others:
            assert rid not in text
            if names[rid] not in front.values():  # an arch may repeat with another lr
                assert names[rid] not in text, f"non-front trial {names[rid]} is shown"

    # 4. the same filter in the default (nested) view: the parent is shown for context, and
    #    expanding it shows only the front
    with pages.page("pareto-filter-nested") as page:
        pages.open(
            page,
            f"/experiments/{exp_id}/runs?{_query(searchFilter=PARETO_FILTER)}",
            f"({links}).some(([id]) => id === '{parent_id}')",
            "pareto-filter-nested",
        )
        pages.settled(page, links)
        assert _expand(page, parent_id), "no expander on the parent row"
        pages.wait(page, f"({links}).length > 1", "pareto-filter-nested")
        shown = {rid for rid, _, _ in pages.settled(page, links)}
        assert shown == {parent_id, *front}, f"nested filter shows {shown}"

    # 5. a search across families: `tags.family = '<family>'` shows exactly that family's trials
    by_family: dict[str, set[str]] = {}
    for rid, r in trials.items():
        by_family.setdefault(r.data.tags["family"], set()).add(rid)
    assert len(by_family) >= 2, f"the mixed search drew one family only: {by_family}"
    family, members = min(by_family.items(), key=lambda kv: (len(kv[1]), kv[0]))
    family_filter = f"tags.family = '{family}'"
    rest = {r.info.run_id for r in client.search_runs([exp_id], family_filter)}
    assert rest == members, f"REST {family_filter} gives {rest}, the trials are {members}"
    query = _query(
        searchFilter=family_filter, orderByKey=f"metrics.`{M.VAL_ACC}`", orderByAsc="false"
    )
    with pages.page("family-filter") as page:
        pages.open(
            page,
            f"/experiments/{exp_id}/runs?{query}",
            f"/matching runs?/.test(document.body.innerText) && ({links}).length > 0",
            "family-filter",
        )
        shown = {rid for rid, _, _ in pages.settled(page, links)}
        pages.shot(page, "family-filter")
        assert shown == members, f"UI {family_filter} shows {sorted(shown)}, not {members}"
        assert re.search(rf"\b{len(members)} matching runs?\b", web.text(page))
