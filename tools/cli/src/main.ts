import { runCli } from './program.js';

// `pnpm vigil ...`: the process wrapper. Everything else (and every test) goes through runCli().
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0); // `pnpm vigil dlq list | head`
  throw err;
});

const code = await runCli(process.argv.slice(2), {
  io: {
    out: (text) => void process.stdout.write(`${text}\n`),
    err: (text) => void process.stderr.write(`${text}\n`),
  },
});
process.exitCode = code;
