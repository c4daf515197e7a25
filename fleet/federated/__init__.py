"""`drivestack fleet federated`: federated averaging (FedAvg) of the predictor across simulated vehicles, against
centralised training on the same drives.

    drivestack fleet federated --logs logs --out runs/fleet/fedavg --vehicles 4 --rounds 10 --local-steps 25
    drivestack fleet federated ... --assign scenario --centralised    # non-IID vehicles, and the pooled baseline
    drivestack fleet federated ... --centralised-rounds               # the schedule-matched pooled baseline

Vehicles. The log folder is split by drive exactly as `fleet train` splits it (`split_drives`); the validation
drives never reach a vehicle. The training drives are dealt to V simulated vehicles by a salted hash of the drive
name (IID-ish) or by scenario family (non-IID; see `vehicles`). A vehicle's windows are cut from its own drives
only, and every vehicle must hold at least one. A drive whose log turns out damaged when its windows are cut is
skipped and listed as broken, as the index lists the logs it cannot read (see `data`).

A round. Every vehicle starts from the global weights and runs `local_steps` steps of the shared training loop
(`prediction.train.train` with `initial=` the global weights) on its own windows: a fresh AdamW every round (the
standard FedAvg: optimiser state never leaves a vehicle), the learning rate a cosine from `lr` to 0 over the round
(no warm-up), data order and augmentation seeded per (round, vehicle). The server then averages the vehicles'
weights weighted by the windows they hold. The vehicles run one after another in this process: they are
simulated, and since each starts from the same global weights with its own seed, the result is what V vehicles
training in parallel would send back.

Objective: the job's (`objective`, mode assignment by default). Under the ELBO the KL weight is constant
(`kl_anneal_steps = 0`: beta = `kl_weight` from the first step) in the local runs and in the centralised runs.
The loop's step restarts at 0 in every local run, so a schedule on it would restart every round; a constant beta
gives federated and centralised training the same objective at every step.

After every round the global model is scored on the validation windows (mixture NLL, minADE/minFDE of 20 samples)
and written atomically to `out/global.safetensors`, the rounds so far and the drives in its metadata;
`out/rounds.json` is the readable log. A killed run resumes (`resume`) from its last finished round and ends as one
that ran through; resuming on other drives (each vehicle's, the validation drives) is refused.

The centralised baselines (`baselines`) use the same model, initial weights, batch size, peak LR and KL weight on
the training drives pooled and process as many samples as the vehicles together (the fair equalisation: a FedAvg
round costs V x S steps of compute). `centralised_train` is one run of the loop for rounds x V x S steps (one cosine
over all its steps), scored from its checkpoints at each round's sample count. `centralised_rounds_train` is
schedule-matched: FedAvg with one vehicle holding every training drive and V x S local steps per round, so it has
the federated run's per-round cosine restart and fresh optimiser; what separates FedAvg from it is the federation.

The modules: `config` (`FederatedConfig`, file names), `data` (the log folder split by drive, its windows),
`vehicles` (drives dealt to vehicles), `server` (the weighted average), `rounds` (initial weights, a vehicle's local
run, scoring), `resume` (the global model file, resuming from it), `loop` (`federated_train`), `baselines` (the
centralised runs), `report` (the comparison table) and `cli` (`add_parser`).
"""

from fleet.federated.baselines import centralised_rounds_config, centralised_rounds_train, centralised_train
from fleet.federated.cli import add_parser, config_from_args, run_federated
from fleet.federated.config import (
    ASSIGNMENTS,
    CENTRAL_DIR,
    CENTRAL_NAME,
    CENTRAL_ROUNDS_DIR,
    GLOBAL_NAME,
    HEADLINE,
    KIND,
    ROUNDS_NAME,
    SUMMARY_NAME,
    FederatedConfig,
)
from fleet.federated.data import LogSplit, read_split
from fleet.federated.loop import FederatedResult, federated_train
from fleet.federated.report import comparison, format_row, table_header
from fleet.federated.resume import drive_lists, resume_point, save_global
from fleet.federated.rounds import initial_weights, local_round, local_seed, predictor_from, validation_scores
from fleet.federated.server import average_weights
from fleet.federated.vehicles import Vehicle, assign_drives, make_fleet, scenario_of, vehicle_by_hash

__all__ = [
    "ASSIGNMENTS",
    "CENTRAL_DIR",
    "CENTRAL_NAME",
    "CENTRAL_ROUNDS_DIR",
    "GLOBAL_NAME",
    "HEADLINE",
    "KIND",
    "ROUNDS_NAME",
    "SUMMARY_NAME",
    "FederatedConfig",
    "FederatedResult",
    "LogSplit",
    "Vehicle",
    "add_parser",
    "assign_drives",
    "average_weights",
    "centralised_rounds_config",
    "centralised_rounds_train",
    "centralised_train",
    "comparison",
    "config_from_args",
    "drive_lists",
    "federated_train",
    "format_row",
    "initial_weights",
    "local_round",
    "local_seed",
    "make_fleet",
    "predictor_from",
    "read_split",
    "resume_point",
    "run_federated",
    "save_global",
    "scenario_of",
    "table_header",
    "validation_scores",
    "vehicle_by_hash",
]
