"""Host side: edgecnn train: run a YAML recipe into a run directory."""

from __future__ import annotations

HELP = "train / transfer-learn from a YAML recipe into a run directory"


def add_arguments(p) -> None:
    p.add_argument("recipe", help="recipe YAML (see recipes/)")
    p.add_argument("--data", help="override the recipe's data (folder or bundled:NAME)")
    p.add_argument("--out", help="run directory (default runs/<recipe name>)")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.add_argument("--skip-bad", action="store_true", help="train without bad image files (they are listed)")
    p.add_argument(
        "--cache-features",
        action="store_true",
        help="transfer stage 1: run the frozen base once, train the head on cached features",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")


def run(args) -> int:
    import json
    from pathlib import Path

    from edgecnn.host.train.recipe import load_recipe

    recipe = load_recipe(_resolve_recipe(args.recipe))
    if args.cache_features:
        import dataclasses

        from edgecnn.errors import ConfigError

        if not recipe.transfer:
            raise ConfigError("--cache-features needs a recipe with a transfer stage (the base must stay frozen)")
        recipe = dataclasses.replace(recipe, transfer=dataclasses.replace(recipe.transfer, cache_features=True))
    out = Path(args.out or f"runs/{recipe.name}")
    from edgecnn.host.train.trainer import train

    run_dir = train(recipe, out, data=args.data, force=args.force, quiet=args.quiet, skip_bad=args.skip_bad)
    from edgecnn import liblog

    liblog.keep_in(run_dir)
    m = json.loads((run_dir / "metrics.json").read_text())
    acc = m.get("accuracy")
    print(
        f"trained {recipe.model.name} on {m['train_images']} images in {m['train_seconds']:.1f} s; "
        f"{m['split']} accuracy {acc:.4f} on {m['n']} images -> {run_dir}"
        if acc is not None
        else f"trained -> {run_dir}"
    )
    return 0


def _resolve_recipe(name: str) -> str:
    """A path, or the name of a shipped recipe (lenet5-digits)."""
    from pathlib import Path

    from edgecnn.resources import resource_dir

    if Path(name).exists():
        return name
    shipped = resource_dir("recipes") / (name if name.endswith(".yaml") else f"{name}.yaml")
    return str(shipped) if shipped.exists() else name
