# Jobs for tests/test_sidekiq.py, run by a real `sidekiq -r ./sidekiq_app.rb` process (Debian's
# ruby-sidekiq), and the enqueuing side: `ruby sidekiq_app.rb CLASS QUEUE COUNT [ARG] [IN]`
# enqueues through Sidekiq's own client. REDIS_URL names the server.
require "sidekiq"
require "sidekiq/launcher"

# Beat every second instead of every 5 s, so the tests can kill a process and see it dead in
# seconds; everything else is Sidekiq as shipped.
Sidekiq::Launcher.send(:remove_const, :BEAT_PAUSE)
Sidekiq::Launcher::BEAT_PAUSE = 1

class AddJob
  include Sidekiq::Worker
  def perform(a, b) = a + b
end

class FailJob
  include Sidekiq::Worker
  sidekiq_options retry: 0 # straight to the dead set
  def perform = raise("failing on purpose")
end

class SleepJob
  include Sidekiq::Worker
  def perform(seconds) = sleep(seconds)
end

# `ruby sidekiq_app.rb stats QUEUE...`: what Sidekiq's own API reports, as JSON, for
# tests/test_conformance.py to compare tqmon's numbers with.
if $PROGRAM_NAME == __FILE__ && ARGV[0] == "stats"
  require "sidekiq/api"
  require "json"
  stats = Sidekiq::Stats.new
  puts JSON.generate(
    "processed" => stats.processed, "failed" => stats.failed, "dead" => stats.dead_size,
    "retry" => stats.retry_size, "scheduled" => stats.scheduled_size,
    "queues" => ARGV[1..].to_h { |q| [q, Sidekiq::Queue.new(q).size] },
    "busy" => Sidekiq::Workers.new.map { |process, _, work| process }.uniq,
    "processes" => Sidekiq::ProcessSet.new.map { |p| p["identity"] })
  exit
end

if $PROGRAM_NAME == __FILE__
  klass, queue, count, arg, delay = ARGV
  job = Object.const_get(klass).set(queue: queue)
  args = { "AddJob" => [1, 2], "FailJob" => [], "SleepJob" => [arg.to_i] }.fetch(klass)
  count.to_i.times { delay ? job.perform_in(delay.to_i, *args) : job.perform_async(*args) }
end
