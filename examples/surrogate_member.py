"""One member of a surrogate committee's training, as a one-member surrogate model file: the weights its
checkpoint serves (averaged, with ``weight_average``) at the epoch it has reached, so a member can be evaluated
alone (``deepks-es evaluate OUT.pt DATA.h5``) or while its training runs.

    python examples/surrogate_member.py CONFIG.toml MEMBER OUT.pt
"""

import argparse

import torch

from deepks_es.training.surrogate import CHECKPOINT, SurrogateTrainConfig, member_workdir, served_committee
from deepks_es.training.train import read_train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the [surrogate] training TOML")
    parser.add_argument("member", type=int, help="member index (0-based)")
    parser.add_argument("output", help="model file to write")
    args = parser.parse_args()
    config = read_train_config(args.config)
    if not isinstance(config, SurrogateTrainConfig):
        parser.error(f"{args.config} is not a surrogate training config")
    path = member_workdir(config, args.member) / CHECKPOINT
    if not path.is_file():
        parser.error(f"no checkpoint {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    committee = served_committee(config, [payload])
    committee.provenance = {"checkpoint": str(path), "epoch": int(payload["epoch"])}
    committee.save(args.output)
    print(f"member {args.member} at epoch {payload['epoch']} -> {args.output}")


if __name__ == "__main__":
    main()
