"""Drive a real JupyterLab in headless Chromium from a test: server, browser, notebook helpers.

Not a test module: test files import it (``tests/`` is on ``sys.path`` through
``pythonpath`` in pyproject.toml) and build their fixtures from these plain
functions and context managers.  The server is a subprocess started
outside ``tests/``. ::

    from helpers.labharness import (
        JupyterLabServer, assert_no_error_outputs, chromium_browser, lab_page,
        open_notebook, require_chromium, run_all, wait_for_all_cells_executed,
        write_notebook,
    )

    require_chromium()  # skips the module, or fails it when CI is set; then import playwright

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        root = tmp_path_factory.mktemp("lab")
        with JupyterLabServer(root / "server", root / "notebooks",
                              env={"NBOPS_HOME": str(root / ".nbops")}) as lab:
            yield lab

    @pytest.fixture(scope="module")
    def browser():
        with chromium_browser() as b:
            yield b

    def test_panel(server, browser):
        write_notebook(server.notebook_dir / "panel.ipynb", ["%snapshots"])
        with lab_page(browser) as page:
            open_notebook(page, server, "panel.ipynb")
            run_all(page)
            wait_for_all_cells_executed(page)
            assert_no_error_outputs(page)

The server runs the Python of the tests (``sys.executable``), so its kernels
import the ``nbops`` installed in that environment, and the startup file
``<env>/etc/ipython/startup/90-nbops-autoload.py`` loads the extension even
though ``IPYTHONDIR`` points at an empty temporary folder: IPython reads
startup files from ``sys.prefix/etc/ipython/startup`` as well as from the
profile.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import nbformat

from helpers.servers import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Playwright

#: Variables of this process the server and its kernels do not inherit (a store, a tracking URI).
_NOT_INHERITED = ("NBOPS_HOME", "MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI")
#: Debian's Chromium; Playwright's own browser download is not used.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: The display name JupyterLab shows in the status bar, "Python 3 (ipykernel) | Idle".
KERNEL_DISPLAY_NAME = "Python 3 (ipykernel)"
KERNEL_IDLE_TEXT = "(ipykernel) | Idle"

#: Text of an output that reports a failure rather than a warning: a Python
#: traceback (IPython's verbose and syntax-error forms), a ``UsageError`` (IPython
#: prints it on stderr, without traceback), a renderer that threw.  The same
#: source is used as a JavaScript RegExp.
ERROR_TEXT_PATTERN = (
    r"Traceback \(most recent call last\)"
    r"|^\s*Cell In\[\d+\], line \d+"
    r"|^UsageError: "
    r"|^Javascript Error: "
)
_ERROR_TEXT = re.compile(ERROR_TEXT_PATTERN, re.MULTILINE)
# JupyterLab 4 gives error outputs no class of their own: an error and a
# stderr stream both render as this mime type, so the text tells them apart.
_STDERR_OUTPUTS = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
_WIDGET_OUTPUTS = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.widget-view+json"]'
# What ipywidgets shows instead of a view it could not create (the text), or
# of a widget whose JavaScript module failed to load (the class).
_WIDGET_FAILED_TEXT = "Error displaying widget"
_WIDGET_ERROR_VIEWS = ".jupyter-widgets-error-widget"
_CURRENT_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"

_STARTUP_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 20.0


def chromium_available() -> bool:
    """Whether ``/usr/bin/chromium`` exists and the ``playwright`` package imports."""
    if not Path(CHROMIUM).is_file():
        return False
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def require_chromium() -> None:
    """Skip the calling test when Chromium is missing, unless ``CI`` is set: then fail.

    CI installs Chromium (``.ci/run``), so a missing browser there is a broken
    machine, not a reason to report browser tests as passed.  Call it at the top
    of a test module, before importing ``playwright``, or in a fixture.
    """
    import pytest

    if chromium_available():
        return
    reason = f"browser tests need {CHROMIUM} (Debian package 'chromium') and the 'playwright' package"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so they may not be skipped", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


class JupyterLabServer:
    """``python -m jupyterlab`` on 127.0.0.1, isolated in ``tmp_dir``, serving ``notebook_dir``.

    ``tmp_dir`` receives the Jupyter config, data and runtime folders, the
    IPython folder, the workspaces and ``jupyterlab.log`` (the server's and the
    kernels' output).  ``env`` is added to the server's environment, which its
    kernels inherit.  An inherited ``NBOPS_HOME`` is dropped so that a
    kernel never finds the store of whoever runs the tests, and so is an
    inherited tracking URI (``MLFLOW_TRACKING_URI`` and nbops' marker of it),
    which may be one an earlier test's ``nbops.open`` left in this process's
    environment; pass them in ``env``::

        with JupyterLabServer(tmp / "server", tmp / "nb", env={"NBOPS_HOME": str(tmp / ".nbops")}) as lab:
            page.goto(lab.lab_url("demo.ipynb"))  # http://127.0.0.1:<port>/lab/tree/demo.ipynb?token=…&reset
    """

    def __init__(
        self,
        tmp_dir: Path | str,
        notebook_dir: Path | str,
        env: Mapping[str, str] | None = None,
        *,
        startup_timeout: float = _STARTUP_TIMEOUT_S,
    ) -> None:
        self.tmp_dir = Path(tmp_dir).resolve()
        self.notebook_dir = Path(notebook_dir).resolve()
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(24)
        self.port = 0
        self.log_path = self.tmp_dir / "jupyterlab.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def lab_url(self, notebook: str) -> str:
        """The URL that opens ``notebook`` (relative to ``notebook_dir``) in a reset workspace."""
        path = urllib.request.pathname2url(notebook.lstrip("/"))
        return f"{self.url}/lab/tree/{path}?token={self.token}&reset"

    def _prepare(self) -> dict[str, str]:
        """Create the isolated folders and settings; return the server's environment."""
        dirs = {
            name: self.tmp_dir / sub
            for name, sub in (
                ("JUPYTER_CONFIG_DIR", "config"),
                ("JUPYTER_DATA_DIR", "data"),
                ("JUPYTER_RUNTIME_DIR", "runtime"),
                ("IPYTHONDIR", "ipython"),
            )
        }
        for path in (*dirs.values(), self.notebook_dir, self.tmp_dir / "workspaces"):
            path.mkdir(parents=True, exist_ok=True)
        settings = dirs["JUPYTER_CONFIG_DIR"] / "lab" / "user-settings" / "@jupyterlab"
        # The news toast still appears with --LabApp.news_url=None; it can cover widgets.
        _write_json(
            settings / "apputils-extension" / "notification.jupyterlab-settings",
            {"fetchNews": "false", "checkForUpdates": False},
        )
        # Every cell attached to the DOM, so off-screen outputs can be found and rendered.
        _write_json(
            settings / "notebook-extension" / "tracker.jupyterlab-settings",
            {"windowingMode": "none"},
        )
        # The kernel is this Python, by absolute path, whatever kernelspecs the
        # environment or PATH hold; the user data folder takes precedence.
        _write_json(
            dirs["JUPYTER_DATA_DIR"] / "kernels" / "python3" / "kernel.json",
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": KERNEL_DISPLAY_NAME,
                "language": "python",
                "metadata": {"debugger": True},
            },
        )
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        env.update({name: str(path) for name, path in dirs.items()})
        env.update(self.extra_env)
        return env

    def _command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.notebook_dir}",
            f"--LabApp.workspaces_dir={self.tmp_dir / 'workspaces'}",
            "--LabApp.news_url=None",
            "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        return command

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _responds(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def start(self) -> Self:
        """Start the server and return once ``/api/status`` answers; raise with the log tail if not."""
        if self._process is not None:
            raise RuntimeError("this JupyterLab server is already running")
        env = self._prepare()
        # The free port is only reserved until it is closed; another process may
        # take it before the server binds, so a bind failure is retried.
        for _attempt in range(3):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    self._command(),
                    env=env,
                    # Its own folder, so nothing in the caller's working folder is imported or written.
                    cwd=self.tmp_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Ctrl-C in the terminal reaches pytest only; stop() then shuts
                    # the server down once, with SIGTERM, so it stops its kernels.
                    start_new_session=True,
                )
            if self._wait_ready():
                return self
            exited = self._process.poll() is not None
            self.stop()
            if not (exited and "address already in use" in self.log_tail().lower()):
                break
        reason = "exited" if exited else f"did not answer within {self.startup_timeout:.0f} s"
        raise RuntimeError(f"JupyterLab {reason} ({self.url}); last lines of {self.log_path}:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if self._responds():
                return True
            time.sleep(0.25)
        return False

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), wait, then SIGKILL if it hangs."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def write_notebook(path: Path | str, cells: Sequence[str | nbformat.NotebookNode]) -> Path:
    """Write a notebook of ``cells`` (a string is a code cell) that opens on the python3 kernel.

    The kernelspec metadata spares JupyterLab's "Select Kernel" dialog.
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": KERNEL_DISPLAY_NAME,
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(c) if isinstance(c, str) else c for c in cells]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def launch_chromium(playwright: Playwright, *, config_home: Path | str | None = None) -> Browser:
    """Headless Debian Chromium (never ``playwright install``); Playwright makes a temporary profile.

    Chromium's crash reporter keeps its database under ``$XDG_CONFIG_HOME``
    whatever the profile; ``config_home`` moves it out of the home folder.
    """
    env = None if config_home is None else {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS), env=env)


@contextmanager
def chromium_browser() -> Iterator[Browser]:
    """Playwright and one Chromium, closed on exit; share it across a module's tests."""
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="chromium-config-") as config_home,
        sync_playwright() as playwright,
    ):
        browser = launch_chromium(playwright, config_home=config_home)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def lab_page(browser: Browser, *, timeout_ms: float = 30_000) -> Iterator[Page]:
    """A page in a fresh browser context (own cookies and storage), closed on exit.

    ``timeout_ms`` is the default for actions (clicks, waits); ``expect``
    keeps its own 5 s default, so pass ``timeout=`` to it for kernel work.
    The notebook helpers take their own, longer, timeouts.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(timeout_ms)
    try:
        yield context.new_page()
    finally:
        context.close()


def kernel_idle(page: Page) -> Locator:
    """The status bar item ``Python 3 (ipykernel) | Idle``, present only while the kernel is idle."""
    return page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE_TEXT).first


def open_notebook(page: Page, server: JupyterLabServer, path: str, *, timeout_ms: float = 60_000) -> None:
    """Open ``path`` (relative to the server's notebook folder) and wait until its kernel is idle.

    Waiting for the status bar's ``(ipykernel) | Idle`` matters: a Run All
    clicked before the kernel is up is silently lost.
    """
    from playwright.sync_api import expect

    page.goto(server.lab_url(path))
    page.locator(f"{_CURRENT_NOTEBOOK} .jp-Cell").first.wait_for(timeout=timeout_ms)
    expect(kernel_idle(page)).to_be_visible(timeout=timeout_ms)


def _click_menu(page: Page, menu: str, item: str) -> None:
    page.locator(f".lm-MenuBar-itemLabel:text-is('{menu}')").click()
    page.locator(f".lm-Menu-itemLabel:text-is('{item}')").click()


def run_all(page: Page) -> None:
    """Clear every output, then Run → Run All Cells in the current notebook.

    Clearing first removes execution counts saved in the file, so that
    :func:`wait_for_all_cells_executed` cannot take an old ``[3]:`` for a new one.
    """
    _click_menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(
        """(panel) => [...document.querySelectorAll(panel + ' .jp-CodeCell .jp-InputArea-prompt')]
                        .every(p => !/\\d/.test(p.textContent))""",
        arg=_CURRENT_NOTEBOOK,
    )
    _click_menu(page, "Run", "Run All Cells")


# True when every non-empty code cell of the current notebook shows "[n]:", or
# when an output reports an error (Run All stops there; the rest stay "[ ]:").
_RUN_FINISHED_JS = """([panelSelector, stderrSelector, widgetSelector, widgetFailed, widgetErrors, pattern]) => {
    const panel = document.querySelector(panelSelector);
    if (!panel) return false;
    const error = new RegExp(pattern, "m");
    if (panel.querySelector(widgetErrors)) return "error";
    for (const out of panel.querySelectorAll(stderrSelector)) {
        if (error.test(out.textContent)) return "error";
    }
    for (const out of panel.querySelectorAll(widgetSelector)) {
        if (out.textContent.trim().startsWith(widgetFailed)) return "error";
    }
    return [...panel.querySelectorAll(".jp-CodeCell")].every((cell) => {
        const source = cell.querySelector(".jp-InputArea-editor .cm-content");
        // JupyterLab does not send an empty cell to the kernel: it keeps "[ ]:".
        if (source && source.textContent.trim() === "") return true;
        const prompt = cell.querySelector(".jp-InputArea-prompt");
        return prompt !== null && /^\\[\\d+\\]:$/.test(prompt.textContent.trim());
    });
}"""


def wait_for_all_cells_executed(page: Page, timeout_ms: float = 120_000, *, raise_on_error: bool = True) -> None:
    """Wait until :func:`run_all` has finished: every code cell numbered, then the kernel idle.

    An error output ends the wait early (Run All stops at the failing cell);
    with ``raise_on_error`` it raises ``AssertionError`` quoting the error.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect

    try:
        page.wait_for_function(
            _RUN_FINISHED_JS,
            arg=[
                _CURRENT_NOTEBOOK,
                _STDERR_OUTPUTS,
                _WIDGET_OUTPUTS,
                _WIDGET_FAILED_TEXT,
                _WIDGET_ERROR_VIEWS,
                ERROR_TEXT_PATTERN,
            ],
            timeout=timeout_ms,
            polling=200,
        )
    except PlaywrightTimeoutError:
        # Say where it stopped: a "[*]:" still running, or "[ ]:" never sent.
        prompts = page.locator(f"{_CURRENT_NOTEBOOK} .jp-CodeCell .jp-InputArea-prompt")
        status = page.locator(".jp-StatusBar-TextItem", has_text="(ipykernel) |")
        raise AssertionError(
            f"Run All did not finish within {timeout_ms / 1000:.0f} s; prompts: "
            f"{' '.join(t.strip() for t in prompts.all_text_contents())}; "
            f"kernel: {' '.join(status.all_text_contents()) or 'no kernel status'}"
        ) from None
    if raise_on_error:
        assert_no_error_outputs(page)
    expect(kernel_idle(page)).to_be_visible(timeout=timeout_ms)


def is_error_text(text: str) -> bool:
    """Whether an output's text reports an error (a traceback, a ``UsageError``), not a warning."""
    return _ERROR_TEXT.search(text) is not None


def error_outputs(page: Page) -> list[str]:
    """The texts of the outputs on the page that report errors, including inside widgets."""
    texts = [t for t in page.locator(_STDERR_OUTPUTS).all_text_contents() if is_error_text(t)]
    texts += [t for t in page.locator(_WIDGET_OUTPUTS).all_text_contents() if t.strip().startswith(_WIDGET_FAILED_TEXT)]
    texts += page.locator(_WIDGET_ERROR_VIEWS).all_text_contents()
    return texts


def assert_no_error_outputs(page: Page) -> None:
    """Fail, quoting them, if any output reports an error; warnings on stderr are allowed."""
    errors = error_outputs(page)
    if errors:
        quoted = "\n---\n".join(e.strip()[-2000:] for e in errors)
        raise AssertionError(f"{len(errors)} error output(s) in the notebook:\n{quoted}")
