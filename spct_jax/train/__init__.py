"""Training, in three floors (imports only point down):

  core       state.py, step.py, loop.py, checkpoint.py, metrics.py and the losses sft.py, rl.py,
             scalar.py: a sharded, jitted, resumable trainer that knows nothing of SPCT;
  stage kit  stage.py: what every stage shares (begin / train_state / fit / finish, items,
             teacher rows, held-out accuracy, the table of seeds);
  stages     warmup.py, rft.py, grpo.py, meta_rm.py, scalar_rm.py: each only its own logic;
and chain.py on top, which knows the configs and the order of the stages
(`python -m spct_jax.train`, __main__.py)."""
