"""`gpusched bench placement`: replay the Alibaba GPU trace (FGD, USENIX ATC'23) with
gpusched's placement core and the baselines, in one run.

Modules: `trace` reads and checks the CSV files, `sim` replays them, `policies` holds
the baselines, `fgd` the fragmentation measure and the FGD policy, `ours` the
gpusched policy (scheduler.core, byte for byte), `report` writes JSON, markdown and
plots. Only `report` needs matplotlib and only the CLI needs tqdm; both are imported
when used.
"""
