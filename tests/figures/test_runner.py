"""The figure runner: discovery, --only, failures reported without losing finished figures."""

from __future__ import annotations

import pathlib
import types

import numpy as np
import pytest
import xarray as xr

from figures import _common
from figures.__main__ import discover, main, run


def _module(name: str, make) -> types.ModuleType:
  module = types.ModuleType(f"figures.fig_{name}", f"A {name} figure.\n\nMore text.")
  module.make = make
  return module


def _make_line(outdir: pathlib.Path, *, paper: bool = False,
               progress: bool = True) -> list[pathlib.Path]:
  assert isinstance(progress, bool)
  x = np.linspace(0.0, 1.0, 5 if not paper else 9)
  fig, ax = _common.subplots()
  ax.plot(x, x**2)
  ax.set_xlabel(_common.LABELS["sigma_w2"])
  data = xr.Dataset({"y": ("sigma_w2", x**2)}, coords={"sigma_w2": x})
  return _common.save(fig, data, outdir / "line")


def _make_broken(outdir: pathlib.Path, *, paper: bool = False,
                 progress: bool = True) -> list[pathlib.Path]:
  raise RuntimeError("this figure is broken")


def test_run_writes_png_and_data_and_continues_past_a_failure(tmp_path, capsys):
  # The broken figure sorts first, so the good one must still run after it.
  modules = {"a_broken": _module("a_broken", _make_broken), "line": _module("line", _make_line)}
  failures = run(modules, outdir=tmp_path)
  assert list(failures) == ["a_broken"]
  assert "this figure is broken" in failures["a_broken"]
  png, nc = tmp_path / "line.png", tmp_path / "line.nc"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with xr.open_dataset(nc, engine="scipy") as ds:
    np.testing.assert_array_equal(ds["y"].values, np.linspace(0.0, 1.0, 5) ** 2)
  assert not list(tmp_path.glob(".tmp-*"))  # no leftovers from the atomic writes
  assert "this figure is broken" in capsys.readouterr().err  # the traceback is shown


def test_run_only_selects_and_paper_is_passed(tmp_path):
  modules = {"a_broken": _module("a_broken", _make_broken), "line": _module("line", _make_line)}
  assert run(modules, outdir=tmp_path, only=["fig_line"], paper=True, progress=False) == {}
  with xr.open_dataset(tmp_path / "line.nc", engine="scipy") as ds:
    assert ds.sizes["sigma_w2"] == 9
  with pytest.raises(ValueError, match=r"`only` must name figures among \['a_broken', 'line'\]"):
    run(modules, outdir=tmp_path, only=["nope"])


def test_save_npz(tmp_path):
  fig, ax = _common.subplots()
  ax.plot([0, 1], [1, 0])
  paths = _common.save(fig, {"x": np.arange(3)}, tmp_path / "sub" / "thing.png")
  assert paths == [tmp_path / "sub" / "thing.png", tmp_path / "sub" / "thing.npz"]
  np.testing.assert_array_equal(np.load(paths[1])["x"], np.arange(3))
  with pytest.raises(ValueError, match="`data` must be"):
    _common.save(fig, [1, 2], tmp_path / "bad")


def test_every_figure_module_follows_the_contract():
  modules = discover()
  for name, module in modules.items():
    assert not isinstance(module, Exception), f"{name} failed to import: {module!r}"
    assert callable(module.make), name
    assert module.__doc__ and module.__doc__.strip(), f"{name} has no title docstring"


def test_main_exit_status_and_unknown_name(tmp_path, capsys):
  assert main(["--list"]) == 0
  with pytest.raises(SystemExit) as e:
    main(["--only", "no_such_figure", "--out", str(tmp_path)])
  assert e.value.code == 2
  assert "no_such_figure" in capsys.readouterr().err


@pytest.mark.parametrize("only", [",", " , ", ""])
def test_only_naming_nothing_is_an_error(tmp_path, capsys, only):
  # `--only ,` used to make nothing and exit 0.
  with pytest.raises(SystemExit) as e:
    main(["--only", only, "--out", str(tmp_path), "--quiet"])
  assert e.value.code == 2
  assert "`only` must name at least one figure" in capsys.readouterr().err
  assert list(tmp_path.iterdir()) == []


def test_out_that_is_a_file_is_an_error(tmp_path, capsys):
  target = tmp_path / "a_file"
  target.write_text("not a folder")
  with pytest.raises(SystemExit) as e:
    main(["--only", "poole", "--out", str(target), "--quiet"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert f"`outdir` must be a folder (or where one can be made), got '{target}'" in err
  assert target.read_text() == "not a folder"


def test_only_finds_a_figure_by_any_png_it_writes(tmp_path):
  """``--only gradient_statistics`` runs the module that writes it (named in its OUTPUTS)."""
  module = _module("line", _make_line)
  module.OUTPUTS = ("line", "line_also")
  assert run({"line": module}, outdir=tmp_path, only=["line_also.png"]) == {}
  assert (tmp_path / "line.png").exists()
  with pytest.raises(ValueError, match="unknown"):
    run({"line": module}, outdir=tmp_path, only=["nothing"])


def test_real_modules_name_their_extra_pngs():
  modules = discover()
  assert "gradient_statistics" in modules["activation_statistics"].OUTPUTS
  assert "jacobian_spectra_relu" in modules["jacobian_spectra"].OUTPUTS


def test_help_shows_no_double_backticks(capsys):
  with pytest.raises(SystemExit):
    main(["--help"])
  assert "``" not in capsys.readouterr().out


def test_every_figure_states_its_time_and_takes_progress():
  # The runner prints each figure's SECONDS up front and passes `progress` to `make`.
  import inspect
  for name, module in discover().items():
    assert isinstance(module, types.ModuleType), (name, module)
    assert isinstance(getattr(module, "SECONDS", None), (int, float)) and module.SECONDS > 0, name
    assert "progress" in inspect.signature(module.make).parameters, name


def test_plan_and_quiet(tmp_path, capsys):
  from figures.__main__ import seconds
  seen = []

  def make(outdir, *, paper=False, progress=True):
    seen.append(progress)
    return _make_line(outdir, paper=paper)

  module = _module("line", make)
  module.SECONDS = 42
  assert seconds(module) == 42.0 and seconds(module, paper=True) == 420.0
  assert run({"line": module}, outdir=tmp_path) == {}
  err = capsys.readouterr().err
  assert "about 42 s in all" in err and "estimated 42 s" in err
  assert run({"line": module}, outdir=tmp_path, progress=False) == {}
  assert capsys.readouterr().err == ""
  assert seen == [True, False]


def test_default_output_is_ignored_by_git_and_gallery_is_separate():
  import subprocess
  from figures.__main__ import DEFAULT_OUTDIR, GALLERY
  root = pathlib.Path(__file__).resolve().parents[2]
  assert DEFAULT_OUTDIR != GALLERY
  probe = DEFAULT_OUTDIR / "phase_diagram.png"
  out = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=root)
  if out.returncode == 128:
    pytest.skip("not a git checkout")
  assert out.returncode == 0, f"{probe} is not ignored by git"


_FAKE_FIGURE = '''
"""A fake figure for the runner's parallel path."""
import pathlib
import xarray as xr
from figures import _common

SECONDS = 1


def make(outdir, *, paper=False, progress=True):
  if NAME == "broken":
    raise RuntimeError("this figure is broken")
  fig, ax = _common.subplots()
  ax.plot([0, 1], [0, 1])
  return _common.save(fig, xr.Dataset({"y": ("x", [0.0, 1.0])}), pathlib.Path(outdir) / NAME)
'''


@pytest.mark.slow
def test_parallel_jobs_make_each_figure_in_a_process_and_report_failures(tmp_path, monkeypatch,
                                                                         capsys):
  import importlib
  import sys
  for name in ("alpha", "beta", "broken"):
    (tmp_path / f"fakefig_{name}.py").write_text(f"NAME = {name!r}\n" + _FAKE_FIGURE)
  monkeypatch.syspath_prepend(str(tmp_path))
  root = pathlib.Path(__file__).resolve().parents[2]   # the workers import `figures` too
  monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{root}")
  modules = {n: importlib.import_module(f"fakefig_{n}") for n in ("alpha", "beta", "broken")}
  out = tmp_path / "out"
  failures = run(modules, outdir=out, jobs=2)
  assert list(failures) == ["broken"] and "this figure is broken" in failures["broken"]
  assert sorted(p.name for p in out.glob("*.png")) == ["alpha.png", "beta.png"]
  err = capsys.readouterr().err
  assert "done   alpha" in err and "FAILED broken" in err and "Traceback" in err
  for n in ("alpha", "beta", "broken"):
    sys.modules.pop(f"fakefig_{n}", None)
  with pytest.raises(ValueError, match="`jobs` must be an integer >= 1, got 0"):
    run(modules, outdir=out, jobs=0)


@pytest.mark.parametrize("env, limit", [({}, "8589934592"),
                                        ({"JAX_COMPILATION_CACHE_MAX_SIZE": "12345"}, "12345")])
def test_shared_compilation_cache_is_size_limited_so_jax_locks_it(tmp_path, env, limit):
  # The processes of --jobs share one cache; JAX locks it only under a size limit.
  import os
  import subprocess
  import sys
  code = ("import os, jax; from figures.__main__ import _use_compilation_cache as use; use(); "
          "print(jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size,"
          " os.environ['JAX_COMPILATION_CACHE_MAX_SIZE'])")
  base = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
  out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True,
                       text=True, check=True, cwd=pathlib.Path(__file__).parents[2])
  directory, size, inherited = out.stdout.split()
  assert directory.endswith(os.path.join("build", "jax-cache"))
  assert size == inherited == limit
