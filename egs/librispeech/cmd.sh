# How the jobs of run.sh (Sylber on LibriSpeech) run, ESPnet style:
# sourced by run.sh after its cd into this directory.
# Sets two job commands, each "LAUNCHER [--NAME VALUE ...]" (run.sh takes them as the defaults of
# its --cmd and --train-cmd options, so one run can also override them on the command line):
#   cmd        the sharded corpus jobs (bootstrap-segments, tokenize):
#              their --cmd; with --nj N each of the N shards is one job
#   train_cmd  the trainings, each one job started by `speechunits launch --cmd "$train_cmd"`
#              on --nnodes nodes with --ngpu GPUs each (resumed with --resume auto when requeued)
# The backend comes from the environment variable SPEECHUNITS_CMD_BACKEND (local | slurm; default
# local), or edit the default below:
#   local  every job a process on this machine (several GPUs: torchrun --standalone)
#   slurm  every job an sbatch job. Site settings (partition, account, QOS, the sbatch flags of each
#          option) go in conf/slurm.conf; the per-job options go here, e.g.
#            train_cmd="slurm --time 48:00:00 --mem 8G"
#          (--mem is per CPU; --gpu and the node count come from run.sh's --ngpu and --nnodes;
#          --max-jobs-run N keeps at most N shards running at once).
cmd_backend=${SPEECHUNITS_CMD_BACKEND:-local}

case "$cmd_backend" in
  local)
    cmd=local
    train_cmd=local ;;
  slurm)
    cmd="slurm --mem 4G --time 8:00:00"
    train_cmd="slurm --mem 4G --time 48:00:00 --num-threads 8" ;;
  *)
    echo "cmd.sh: unknown job backend '$cmd_backend' (SPEECHUNITS_CMD_BACKEND): expected local or slurm" >&2
    return 1 ;;
esac
unset cmd_backend  # not an option of run.sh: --cmd / --train-cmd are
