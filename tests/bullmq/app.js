// Real BullMQ workers and producers for tests/test_bullmq.py and tests/bench.py.
//
//   node app.js worker QUEUE [NAME] [LOCK_MS] [CONCURRENCY]  a Worker; prints "ready"
//   node app.js add QUEUE JOB COUNT [OPTS_JSON]   COUNT jobs named JOB (sleep: data.ms; fail)
//   node app.js pause QUEUE | resume QUEUE | counts QUEUE (getJobCounts() as JSON)
//   node app.js bulk QUEUE_PREFIX QUEUES JOBS     JOBS waiting jobs in each of QUEUES queues
//
// Environment: REDIS_URL (redis://host:port), BULLMQ_PREFIX (default bull), BULLMQ_MAJOR (5 or
// 6: which pinned BullMQ to load, default 6), CLUSTER=1 to connect to a Redis Cluster.
'use strict';

const { URL } = require('url');
const bullmq = require(process.env.BULLMQ_MAJOR === '5' ? 'bullmq5' : 'bullmq');
const IORedis = require('ioredis');

const url = new URL(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
const prefix = process.env.BULLMQ_PREFIX || 'bull';
const node = { host: url.hostname, port: Number(url.port || 6379) };

function connection() {
  // Workers block: ioredis must not give up on their commands (BullMQ's requirement).
  if (process.env.CLUSTER === '1') {
    return new IORedis.Cluster([node], { redisOptions: { maxRetriesPerRequest: null } });
  }
  return new IORedis({ ...node, maxRetriesPerRequest: null });
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function processor(job) {
  if (job.name === 'sleep') await sleep(job.data.ms);
  if (job.name === 'fail') throw new Error('failing on purpose');
  return 'done';
}

async function main() {
  const [command, queueName, ...rest] = process.argv.slice(2);
  if (command === 'worker') {
    const [name, lockMs, concurrency] = rest;
    const opts = { connection: connection(), prefix, concurrency: Number(concurrency || 1) };
    if (name && name !== '-') opts.name = name;
    if (lockMs) opts.lockDuration = Number(lockMs);
    // BullMQ's own metrics counters (the pool counters tqmon reads), when asked for
    if (process.env.BULLMQ_METRICS === '1') opts.metrics = { maxDataPoints: 60 };
    const worker = new bullmq.Worker(queueName, processor, opts);
    worker.on('error', () => {});
    await worker.waitUntilReady();
    process.stdout.write('ready\n');
    return new Promise(() => {}); // runs until killed
  }
  const conn = connection();
  const queue = new bullmq.Queue(queueName, { connection: conn, prefix });
  if (command === 'add') {
    const [job, count, opts] = rest;
    const data = job === 'sleep' ? { ms: 600000 } : {};
    const jobs = Array.from({ length: Number(count) },
      () => ({ name: job, data, opts: opts ? JSON.parse(opts) : {} }));
    await queue.addBulk(jobs);
  } else if (command === 'counts') {
    process.stdout.write(JSON.stringify(await queue.getJobCounts()) + '\n');
  } else if (command === 'pause') {
    await queue.pause();
  } else if (command === 'resume') {
    await queue.resume();
  } else if (command === 'bulk') {
    const [queues, jobs] = rest.map(Number);
    for (let q = 0; q < queues; q++) {
      const target = new bullmq.Queue(`${queueName}${q}`, { connection: conn, prefix });
      for (let start = 0; start < jobs; start += 1000) {
        const size = Math.min(1000, jobs - start);
        await target.addBulk(Array.from({ length: size }, (_, i) => ({ name: 'job', data: { i } })));
      }
      await target.close();
    }
  } else {
    throw new Error(`unknown command ${command}`);
  }
  await queue.close();
  await conn.quit();
}

main().catch(err => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
