"""`medssl tune` on the real BreastMNIST with a tiny budget: folds never touch the test split,
the recipe it writes trains, the search resumes and extends, two processes share one journal."""

import json
import os
import subprocess
import sys

import numpy as np
import yaml

from medssl import cli
from medssl import data as D
from medssl.commands import tune

TINY = ["--folds", "2", "--max-epochs", "1", "--no-progress", "--device", "cpu"]


def test_folds_partition_train_and_val_and_never_read_test(tmp_path, data_root):
    from medssl.options import TuneConfig

    cfg = TuneConfig(dataset="breastmnist", data_root=str(data_root), folds=3, repeats=2)
    paths = tune.make_folds(cfg, tmp_path, positive=0)
    arrays = D.load_arrays("breastmnist", data_root)
    pool = np.concatenate([arrays["train"][0], arrays["val"][0]])
    test = {x.tobytes() for x in arrays["test"][0]} - {x.tobytes() for x in pool}
    assert len(paths) == 6
    for r in range(2):
        held = []
        for f in range(3):
            z = np.load(tmp_path / "folds" / f"r{r}-f{f}.npz")
            n = sum(len(z[f"{s}_labels"]) for s in ("train", "val", "test"))
            assert n == len(pool)  # each fold uses every train+val image exactly once
            held.append(len(z["test_labels"]))
            for s in ("train", "val", "test"):
                assert not {x.tobytes() for x in z[f"{s}_images"]} & test
                assert set(np.unique(z[f"{s}_labels"])) == {0, 1}
        assert sum(held) == len(pool)  # the held-out folds partition train+val


def test_choose_is_the_fastest_within_one_sem_of_the_best():
    rows = [
        {"cv_auroc": 0.90, "cv_sem": 0.02, "train_time_s": 100.0},
        {"cv_auroc": 0.89, "cv_sem": 0.02, "train_time_s": 10.0},
        {"cv_auroc": 0.85, "cv_sem": 0.01, "train_time_s": 1.0},
        {"cv_auroc": 0.84, "cv_sem": 0.01, "train_time_s": 50.0},
    ]
    assert tune.choose(rows) is rows[1]
    assert tune.pareto(rows) == rows[:3]


def test_noise_pruner_stops_only_what_cannot_reach_the_chosen_band():
    import optuna
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(direction="maximize")
    folds = [0.90, 0.92, 0.94, 0.92, 0.92]  # best: mean 0.92, sd 0.0141, SEM 0.0063
    for value in (0.92, 0.80, 0.85):
        attrs = {"fold_auroc": [f - 0.92 + value for f in folds]}
        study.add_trial(create_trial(value=value, user_attrs=attrs))
    pruner = tune.noise_pruner(n_startup_trials=3, z=2.0)

    def running(*means):
        return create_trial(state=TrialState.RUNNING, intermediate_values=dict(enumerate(means)))

    assert not pruner.prune(study, running(0.90))  # within 2 fold-SEs of the band: go on
    assert pruner.prune(study, running(0.85))  # 0.85 + 0.028 < 0.914: hopeless
    assert pruner.prune(study, running(0.90, 0.895, 0.895, 0.895))  # 0.895 + 0.014 < 0.914
    assert not tune.noise_pruner(n_startup_trials=4).prune(study, running(0.5))  # warming up


def test_todays_default_is_the_first_trial_when_the_space_holds_it():
    from medssl.options import TrainConfig, TuneConfig

    cfg = TuneConfig(dataset="pneumoniamnist", device="cpu")
    first = tune.default_recipe(cfg, tune.search_space(cfg))
    train = TrainConfig(dataset="pneumoniamnist")
    assert first["stem"] == train.stem and first["epochs"] == train.epochs
    assert first["lr"] == train.lr and first["precision"] in ("fp32", "bf16")
    narrow = TuneConfig(dataset="pneumoniamnist", space=f"epochs={train.epochs + 1}", max_epochs=99)
    assert tune.default_recipe(narrow, tune.search_space(narrow)) is None
    fixed = TuneConfig(dataset="pneumoniamnist", space=f"lr={train.lr}")
    assert "lr" not in tune.default_recipe(fixed, tune.search_space(fixed))  # fixed: not a param


def test_tune_writes_a_recipe_train_accepts_and_extends_on_resume(tmp_path, data_root, capsys):
    out = tmp_path / "tune"
    base = ["tune", "--dataset", "breastmnist", "--data-root", str(data_root), "--out", str(out)]
    base += ["--space", "stem=imagenet,compact; lr=1e-3; batch_size=128"]
    assert cli.main(base + ["--trials", "2"] + TINY) == 0
    summary = json.loads((out / "tune.json").read_text())
    assert summary["n_finished"] == 2 and (out / "pareto.png").is_file()
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["positive_class"] == "malignant" and recipe["epochs"] == 1
    assert recipe["stem"] in ("imagenet", "compact") and recipe["lr"] == 1e-3  # --space holds
    assert recipe["batch_size"] == 128
    assert "--config" in capsys.readouterr().out
    run = tmp_path / "train"
    argv = ["train", "--config", str(out / "recipe.yaml"), "--data-root", str(data_root),
            "--out", str(run), "--no-progress", "--no-tensorboard"]  # fmt: skip
    assert cli.main(argv) == 0
    assert cli.main(base + ["--trials", "2"] + TINY) == 0  # finished: nothing to do
    assert "nothing to do" in capsys.readouterr().out
    assert cli.main(base + ["--trials", "3"] + TINY) == 0  # more trials: the search goes on
    assert json.loads((out / "tune.json").read_text())["n_finished"] == 3
    assert len((out / "trials.csv").read_text().splitlines()) - 1 >= 2


def test_two_processes_share_one_search(tmp_path, data_root):
    journal = tmp_path / "shared.log"
    procs = []
    for i in range(2):
        cmd = [sys.executable, "-m", "medssl.cli", "tune", "--dataset", "breastmnist",
               "--data-root", str(data_root), "--out", str(tmp_path / f"p{i}"), "--trials", "3",
               "--storage", str(journal), *TINY]  # fmt: skip
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="medssl-tune", storage=storage)
    done = [t for t in study.trials if t.state.is_finished()]
    assert len(done) >= 3  # both counted the other's trials: 3 in all (+ at most one in flight)
    runs = {p.name[:5] for i in range(2) for p in (tmp_path / f"p{i}" / "runs").iterdir()}
    assert len(runs) == len(done)  # each trial ran in one process only


def test_bad_tune_options_are_one_line(tmp_path, data_root, capsys):
    for argv, reason in [
        (["--folds", "1"], "folds"),
        (["--trials", "0"], "trials"),
        (["--positive-class", "tumour"], "--positive-class 'tumour' unknown"),
        (["--storage", ""], "storage"),
        (["--space", "stem=resnet"], "stem: choose from"),
        (["--space", "momentum=0.9"], "'momentum' is not searched"),
        (["--space", "lr=1e-3,1e-2,1e-1"], "two bounds"),
        (["--space", "epochs=50", "--max-epochs", "5"], "epochs"),
    ]:
        out = tmp_path / "t"
        code = cli.main(["tune", "--data-root", str(data_root), "--out", str(out), *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and reason in err, err
        assert not out.exists()


def test_killed_search_resumes(tmp_path, data_root):
    import signal
    import time

    out = tmp_path / "tune"
    argv = ["tune", "--dataset", "breastmnist", "--data-root", str(data_root), "--out", str(out),
            "--trials", "3", *TINY]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "medssl.cli", *argv])
    deadline = time.time() + 300
    while time.time() < deadline and not any((out / "runs").glob("t0001-*")):
        time.sleep(0.2)  # the first trial is finished once the second one has started
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "tune.json").exists()
    assert cli.main(argv) == 2  # an interrupted search needs --resume
    assert cli.main(argv + ["--resume"]) == 0
    summary = json.loads((out / "tune.json").read_text())
    assert summary["n_finished"] == 3 and summary["n_complete"] >= 1
