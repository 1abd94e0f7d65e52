"""A Monte Carlo study spread over several processes with ``jax.distributed``.

Start one copy per process (here two on one machine, CPU backend):

    python examples/distributed_study.py --process-id 0 --num-processes 2 &
    python examples/distributed_study.py --process-id 1 --num-processes 2

On a cluster, run one copy per host with the coordinator's address. Each process
takes a contiguous block of the replicates, fits it on its own devices, and the
blocks are all-gathered: every process ends with the whole study, the same as a
one-process run with the same seed. Process 0 prints the summary (and saves the
estimates with ``--out``).
"""

import argparse

import jax


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--coordinator", default="127.0.0.1:12357", help="host:port of process 0")
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=120, help="seconds to wait for the other processes")
    parser.add_argument("--out", help="process 0 saves the estimates here (.npz)")
    args = parser.parse_args()

    # CPU processes exchange data through gloo; GPU jobs use NCCL without this line.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id, initialization_timeout=args.timeout)
    import jaxgmm  # after initialize, so every device of the job is visible

    truth = jaxgmm.MixtureParams(weights=[0.2, 0.8], means=[0.0, 5.0], scales=[1.0, 2**0.5])
    study = jaxgmm.monte_carlo(jax.random.key(args.seed), truth, args.n, args.reps,
                               fixed="scales", distributed=True)
    if jax.process_index() == 0:
        print(study.summary())
        if args.out:
            study.save(args.out)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
