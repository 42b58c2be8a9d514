"""Trains the toy classifier in its own process, for the kill/resume tests.

usage: python run_toy.py OUTPUT_DIR [--kill-at STEP] [--sigterm-at STEP] [--resume]
                                    [--kill-in EVENT:N:WHEN] [--trace FILE]
Writes OUTPUT_DIR/final_state.pt and OUTPUT_DIR/final_history.json when training ends.

``--kill-in`` SIGKILLs the process inside a checkpoint save, at the N-th (1-based, counted in
this process) file-system operation of kind EVENT, ``before`` it, ``after`` it or ``mid`` way
(a file half written, a folder half deleted). The events, in the order of a save:

    write    torch.save of a file into the temporary folder (mid: half the bytes written)
    manifest the digests file written last into the temporary folder
    fsync    an fsync of a file of the temporary folder
    publish  the rename of the temporary folder to its final name
    state    the atomic replace of state.json
    trash    the rename of a checkpoint no longer kept to .trash-<name>
    prune    the deletion of that .trash- folder (mid: half its files deleted)

``--trace FILE`` appends one line per event (``EVENT N``) to FILE, to choose kill points.
The hooks live here only: the library is tested as it runs.

``python run_toy.py --serve`` runs many trainings cheaply: it imports torch once, then reads
one JSON list of arguments per line on stdin, runs each in a child process forked from it (a
real process, killed for real) and answers one JSON line: the child's return code (negative:
the signal that ended it) and what it wrote to stdout and stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig, WarmupDecaySchedulerBuilder  # noqa: E402
from tests.training.toy import AccuracyComputer, ToyTextClassifier, make_texts  # noqa: E402


class SignalAt(TrainerCallback):
    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_step_end(self, step_idx, nb_batches, phase):
        if phase == "train" and self.state.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class KillHooks:
    """Counts the file-system events of checkpoint saves and SIGKILLs the process at one of them."""

    def __init__(self, kill_in: str | None, trace: str | None):
        event, count, when = kill_in.split(":") if kill_in else (None, "0", None)
        self.event, self.count, self.when, self.trace = event, int(count), when, trace
        self.seen: dict[str, int] = {}

    def at(self, event: str, when: str, path: Path | None = None) -> None:
        """Called before and after each event (``when``), and ``mid`` way where it has a middle."""
        if when == "before":
            self.seen[event] = self.seen.get(event, 0) + 1
            if self.trace:
                with open(self.trace, "a", encoding="utf-8") as handle:
                    handle.write(f"{event} {self.seen[event]}\n")
        if event == self.event and when == self.when and self.seen.get(event) == self.count:
            if when == "mid" and event == "prune" and path is not None:
                files = sorted(p for p in path.rglob("*") if p.is_file())
                for file in files[: max(1, len(files) // 2)]:
                    file.unlink()
            os.kill(os.getpid(), signal.SIGKILL)

    def install(self) -> None:
        import medkit_exp.training.checkpoint as checkpoint

        hooks, replace, rmtree, fsync, save = self, os.replace, shutil.rmtree, os.fsync, torch.save
        write_manifest = checkpoint.write_manifest

        def hooked_replace(src, dst, *args, **kwargs):
            src, dst = Path(src), Path(dst)
            event = ("publish" if src.name.startswith(".tmp-checkpoint") else "state" if src.name == ".state.json.tmp"
                     else "trash" if dst.name.startswith(".trash-") else None)
            if event is None:
                return replace(src, dst, *args, **kwargs)
            hooks.at(event, "before")
            replace(src, dst, *args, **kwargs)
            hooks.at(event, "after")

        def hooked_rmtree(path, *args, **kwargs):
            if not Path(path).name.startswith(".trash-"):
                return rmtree(path, *args, **kwargs)
            hooks.at("prune", "before")
            hooks.at("prune", "mid", Path(path))
            rmtree(path, *args, **kwargs)
            hooks.at("prune", "after")

        def hooked_fsync(descriptor):
            name = Path(os.readlink(f"/proc/self/fd/{descriptor}")).parent.name
            if name.startswith(".tmp-checkpoint"):
                hooks.at("fsync", "before")
            fsync(descriptor)

        def hooked_save(obj, destination, *args, **kwargs):
            if not (isinstance(destination, (str, Path)) and Path(destination).parent.name.startswith(".tmp-")):
                return save(obj, destination, *args, **kwargs)
            hooks.at("write", "before")
            if hooks.event == "write" and hooks.when == "mid" and hooks.seen["write"] == hooks.count:
                buffer = io.BytesIO()
                save(obj, buffer, *args, **kwargs)
                Path(destination).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                hooks.at("write", "mid")
            save(obj, destination, *args, **kwargs)
            hooks.at("write", "after")

        def hooked_manifest(*args, **kwargs):
            hooks.at("manifest", "before")
            path = write_manifest(*args, **kwargs)
            hooks.at("manifest", "after")
            return path

        os.replace, shutil.rmtree, os.fsync, torch.save = hooked_replace, hooked_rmtree, hooked_fsync, hooked_save
        checkpoint.write_manifest = hooked_manifest


def serve() -> None:
    """Fork one child per command line read on stdin (see the module's docstring)."""
    for line in sys.stdin:
        with tempfile.TemporaryFile("w+", encoding="utf-8") as output:
            pid = os.fork()
            if pid == 0:
                os.dup2(output.fileno(), 1)
                os.dup2(output.fileno(), 2)
                code = 1
                try:
                    main(json.loads(line))
                    code = 0
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else 1
                except BaseException:  # noqa: BLE001 - reported like an uncaught exception
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            output.seek(0)
            print(json.dumps({"returncode": returncode, "output": output.read()}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--sigterm-at", type=int)
    parser.add_argument("--kill-in")
    parser.add_argument("--trace")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    if args.kill_in or args.trace:
        KillHooks(args.kill_in, args.trace).install()
    config = TrainerConfig(
        output_dir=args.output_dir, learning_rate=5e-3, nb_training_epochs=3, batch_size=4, seed=7,
        gradient_accumulation_steps=2, eval_strategy="steps", eval_steps=5, logging_steps=3,
        checkpoint_metric="accuracy", minimize_checkpoint_metric=False, keep_best_k=2, max_grad_norm=1.0,
        weight_decay=0.01,
    )
    callbacks = []
    if args.kill_at:
        callbacks.append(SignalAt(args.kill_at, signal.SIGKILL))
    if args.sigterm_at:
        callbacks.append(SignalAt(args.sigterm_at, signal.SIGTERM))
    trainer = Trainer(
        ToyTextClassifier(dropout=0.3), config, make_texts(90, 1), make_texts(30, 2), AccuracyComputer(),
        lr_scheduler_builder=WarmupDecaySchedulerBuilder("cosine", warmup_steps=3), callback=callbacks,
    )
    history = trainer.train(resume_from_checkpoint="last" if args.resume else None)
    out = Path(args.output_dir)
    torch.save(trainer.component.model.state_dict(), out / "final_state.pt")
    summary = {"history": history, "stop_reason": trainer.state.stop_reason, "global_step": trainer.state.global_step}
    (out / "final_history.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    serve() if sys.argv[1:] == ["--serve"] else main()
