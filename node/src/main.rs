//! `chatpay-node`: run a validator, write a new network, or run a local
//! four-validator network in one command.

use chatpay_node::config::{Config, read_key};
use chatpay_node::genesis::Genesis;
use chatpay_node::maintenance;
use chatpay_node::network::TcpConnector;
use chatpay_node::node::{NodeConfig, run};
use chatpay_node::storage::{RocksStore, Store};
use chatpay_node::testnet::{self, TestnetSpec};
use chatpay_proto::pb;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

/// One base unit is 10^-6 CPY.
const UNIT: u64 = 1_000_000;

#[derive(Parser)]
#[command(name = "chatpay-node", version, about = "chatpay validator node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the validators of a new network are.
#[derive(clap::Args)]
struct Layout {
    /// Number of validators (tolerates (N-1)/3 faulty).
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Host every validator is reached at (one per validator with --hosts).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Hosts of the validators, comma separated (multi-host networks).
    #[arg(long, value_delimiter = ',')]
    hosts: Option<Vec<String>>,
    /// Port of validator 0; validator i gets base_port + i.
    #[arg(long, default_value_t = 26650)]
    base_port: u16,
    /// Ports of the validators, comma separated (instead of --base-port).
    #[arg(long, value_delimiter = ',')]
    ports: Option<Vec<u16>>,
    /// Chain id.
    #[arg(long, default_value = "chatpay-testnet")]
    chain_id: String,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (file, defaults and CHATPAY_*
    /// environment overrides) as TOML, after validating it.
    Show {
        /// The validator home.
        #[arg(long)]
        home: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Write the homes of a new network: per validator a key, config.toml
    /// and the shared genesis, plus a funded faucet key.
    Testnet {
        /// Directory to create.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        layout: Layout,
    },
    /// Run one validator from its home until SIGINT or SIGTERM.
    Start {
        /// The validator home (config.toml, key, genesis, data).
        #[arg(long)]
        home: PathBuf,
        /// Log format: text or json (overrides config.toml).
        #[arg(long)]
        log_format: Option<String>,
        /// With an empty store: "snapshot" imports the state at a recent
        /// committed height from the peers when the chain is far ahead,
        /// "genesis" replays every block (overrides config.toml's
        /// `sync.from`).
        #[arg(long)]
        sync_from: Option<chatpay_node::state_sync::SyncFrom>,
    },
    /// Delete a stopped validator's chain data, keeping its keys and its
    /// safety record; it then catches up from its peers.
    UnsafeReset {
        /// The validator home.
        #[arg(long)]
        home: PathBuf,
    },
    /// Copy a stopped validator's database to a new directory.
    Backup {
        /// The validator home.
        #[arg(long)]
        home: PathBuf,
        /// Directory to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace a stopped validator's database with a backup (its current
    /// safety record is kept).
    Restore {
        /// The validator home.
        #[arg(long)]
        home: PathBuf,
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
    },
    /// Show or check a validator's configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Run a local 4-validator network on 127.0.0.1 until Ctrl-C; state is
    /// kept under --dir, so running it again resumes the same chain.
    Devnet {
        /// Where the network lives.
        #[arg(long, default_value = ".devnet")]
        dir: PathBuf,
        /// Delete the network under --dir first and start a new chain.
        #[arg(long)]
        reset: bool,
        /// Number of validators of a new network.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Port of validator 0 of a new network.
        #[arg(long, default_value_t = 26650)]
        base_port: u16,
    },
    /// Print a validator's chain, height and newest block.
    Status {
        /// host:port of the validator.
        #[arg(long, default_value = "127.0.0.1:26650")]
        node: String,
        /// Show the block at this height instead of the head.
        #[arg(long)]
        height: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Testnet { out, layout } => cmd_testnet(&out, layout),
            Command::Start {
                home,
                log_format,
                sync_from,
            } => cmd_start(&home, log_format, sync_from).await,
            Command::Config {
                action: ConfigAction::Show { home },
            } => cmd_config_show(&home),
            Command::UnsafeReset { home } => {
                let (data, safety) = data_dirs(&home)?;
                let height = maintenance::unsafe_reset(&data, &safety)?;
                println!(
                    "removed the chain data in {} (was at height {}); keys, and the safety record and timeout certificate of its last round in {}, are kept",
                    data.display(),
                    height.map_or("none".into(), |h| h.to_string()),
                    safety.display()
                );
                Ok(())
            }
            Command::Backup { home, out } => {
                let height = maintenance::backup(&data_dirs(&home)?.0, &out)?;
                println!(
                    "backed up height {} to {}",
                    height.unwrap_or(0),
                    out.display()
                );
                Ok(())
            }
            Command::Restore { home, from } => {
                let (data, safety) = data_dirs(&home)?;
                let height = maintenance::restore(&data, &safety, &from)?;
                println!(
                    "restored height {} from {}; the validator catches up from its peers when started",
                    height.unwrap_or(0),
                    from.display()
                );
                Ok(())
            }
            Command::Devnet {
                dir,
                reset,
                validators,
                base_port,
            } => cmd_devnet(&dir, reset, validators, base_port).await,
            Command::Status { node, height } => cmd_status(&node, height).await,
        }
    });
    // Dropping a runtime waits for every blocking task without end; a step
    // still running when the shutdown bound passed must not keep the
    // process alive (a node told to stop once kept running for minutes).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatpay-node: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn cmd_testnet(out: &Path, layout: Layout) -> Result<()> {
    let net = write_network(out, layout)?;
    println!(
        "wrote {} validator homes under {}",
        net.homes.len(),
        out.display()
    );
    for (home, v) in net.homes.iter().zip(&net.genesis.validators) {
        println!("  {}  {}", home.display(), v.network_address);
    }
    println!(
        "faucet {} (key {})",
        net.faucet_address,
        net.faucet_key.display()
    );
    println!(
        "start each with: chatpay-node start --home {}",
        net.homes[0].display()
    );
    Ok(())
}

fn write_network(out: &Path, layout: Layout) -> Result<testnet::Testnet> {
    let Layout {
        validators,
        host,
        hosts,
        base_port,
        ports,
        chain_id,
    } = layout;
    if validators == 0 {
        return Err("--validators must be at least 1".into());
    }
    let hosts = hosts.unwrap_or_else(|| vec![host; validators]);
    let ports = match ports {
        Some(p) => p,
        None => (0..validators)
            .map(|i| {
                u16::try_from(i)
                    .ok()
                    .and_then(|i| base_port.checked_add(i))
                    .ok_or("ports past 65535")
            })
            .collect::<std::result::Result<_, _>>()?,
    };
    if hosts.len() != validators || ports.len() != validators {
        return Err(format!(
            "{validators} validators need {validators} hosts and ports"
        ));
    }
    let addresses: Vec<String> = hosts
        .iter()
        .zip(&ports)
        .map(|(h, p)| format!("{h}:{p}"))
        .collect();
    // A local network binds loopback; other hosts bind every interface.
    let listen = hosts
        .iter()
        .zip(&ports)
        .map(|(h, p)| {
            if h == "127.0.0.1" || h == "localhost" {
                format!("127.0.0.1:{p}")
            } else {
                format!("0.0.0.0:{p}")
            }
        })
        .collect();
    let spec = TestnetSpec {
        chain_id,
        addresses,
        listen,
        faucet_balance: 1_000_000_000 * UNIT,
        fee_per_transfer: 1_000,
        accounts: vec![],
    };
    testnet::write(out, &spec).map_err(|e| e.to_string())
}

/// Logs to stderr, filtered by `RUST_LOG` when set, else by `filter`;
/// `json` gives one JSON object per line.
fn init_logs(filter: &str, json: bool) -> Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|e| e.to_string())
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A validator ready to run: configuration, genesis, key, store, listener.
struct Prepared {
    config: Config,
    genesis: Arc<Genesis>,
    node: NodeConfig,
    store: Arc<dyn Store>,
    listener: TcpListener,
    metrics: Option<TcpListener>,
}

async fn prepare(home: &Path, config: Config) -> Result<Prepared> {
    let genesis = Genesis::load(&home.join(&config.genesis_file)).map_err(|e| e.to_string())?;
    let key = read_key(&home.join(&config.key_file)).map_err(|e| e.to_string())?;
    let data = home.join(&config.data_dir);
    let safety = home.join(&config.safety_dir);
    let store = RocksStore::open_with_safety_files(&data, &safety)
        .map_err(|e| format!("{}: {e}", data.display()))?;
    let listener = listen(&config.listen).await?;
    let metrics = if config.metrics_listen.is_empty() {
        None
    } else {
        Some(
            TcpListener::bind(&config.metrics_listen)
                .await
                .map_err(|e| format!("cannot serve metrics on {}: {e}", config.metrics_listen))?,
        )
    };
    Ok(Prepared {
        node: NodeConfig {
            key,
            core: config.core(),
            mempool: config.mempool(),
            clock: chatpay_node::node::Clock::system(),
            stats: None,
            faulty: chatpay_node::consensus::mutations::Faulty::default(),
            sync: config.sync(),
        },
        config,
        genesis: Arc::new(genesis),
        store: Arc::new(store),
        listener,
        metrics,
    })
}

async fn run_prepared(
    p: Prepared,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    run(
        p.genesis,
        p.store,
        p.node,
        TcpListenerStream::new(p.listener),
        p.metrics,
        Arc::new(TcpConnector::default()),
        shutdown,
    )
    .await
    .map_err(|e| e.to_string())
}

async fn cmd_start(
    home: &Path,
    log_format: Option<String>,
    sync_from: Option<chatpay_node::state_sync::SyncFrom>,
) -> Result<()> {
    let mut config = Config::load(home, std::env::vars()).map_err(|e| e.to_string())?;
    if let Some(format) = log_format {
        config.log_format = format;
        config.validate().map_err(|e| e.to_string())?;
    }
    if let Some(from) = sync_from {
        config.sync.from = from;
    }
    init_logs(&config.log, config.log_format == "json")?;
    let c = &config.consensus;
    tracing::info!(
        home = %home.display(),
        listen = %config.listen,
        metrics_listen = %config.metrics_listen,
        log_format = %config.log_format,
        data_dir = %config.data_dir.display(),
        genesis_file = %config.genesis_file.display(),
        base_timeout_ms = c.base_timeout_ms,
        max_timeout_ms = c.max_timeout_ms,
        idle_interval_ms = c.idle_interval_ms,
        max_block_txs = c.max_block_txs,
        max_block_bytes = c.max_block_bytes,
        mempool_max_txs = config.mempool.max_txs,
        mempool_max_bytes = config.mempool.max_bytes,
        mempool_max_per_sender = config.mempool.max_per_sender,
        mempool_max_parked = config.mempool.max_parked,
        sync_from = ?config.sync.from,
        snapshot_min_height = config.sync.snapshot_min_height,
        "effective settings"
    );
    let prepared = prepare(home, config).await?;
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        terminated().await;
        tracing::info!("stopping: finishing the current step, handing over pending transactions");
        let _ = signalled.send(());
    };
    tokio::select! {
        ran = run_prepared(prepared, shutdown) => ran,
        () = async {
            let _ = on_signal.await;
            tokio::time::sleep(SHUTDOWN_BOUND).await;
        } => Err(format!("shutdown took longer than {SHUTDOWN_BOUND:?}; exiting anyway")),
    }
}

/// The gRPC listener: the socket passed as fd 3 by whoever started this
/// process (systemd socket activation, `LISTEN_FDS=1`; the process tests
/// pass one they keep bound, so no other process can take the port between
/// two runs of a validator), else a new one bound to `address`.
async fn listen(address: &str) -> Result<TcpListener> {
    let passed = listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .map_err(|e| format!("LISTEN_FDS: the passed socket is unusable: {e}"))?;
    match passed {
        Some(std) => std
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(std))
            .map_err(|e| format!("LISTEN_FDS: {e}")),
        None => TcpListener::bind(address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}")),
    }
}

/// Longest a graceful shutdown may take before the process exits anyway.
const SHUTDOWN_BOUND: std::time::Duration = std::time::Duration::from_secs(20);

/// The chain data and safety record directories of `home`.
fn data_dirs(home: &Path) -> Result<(PathBuf, PathBuf)> {
    let config = Config::load(home, std::env::vars()).map_err(|e| e.to_string())?;
    Ok((home.join(config.data_dir), home.join(config.safety_dir)))
}

fn cmd_config_show(home: &Path) -> Result<()> {
    let config = Config::load(home, std::env::vars()).map_err(|e| e.to_string())?;
    print!("{}", config.to_toml());
    Ok(())
}

async fn cmd_devnet(dir: &Path, reset: bool, validators: usize, base_port: u16) -> Result<()> {
    init_logs(
        &std::env::var("CHATPAY_LOG").unwrap_or_else(|_| "warn,chatpay_node=info".into()),
        false,
    )?;
    if reset && dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let fresh = !dir.join("genesis.json").exists();
    if fresh {
        let layout = Layout {
            validators,
            host: "127.0.0.1".into(),
            hosts: None,
            base_port,
            ports: None,
            chain_id: "chatpay-devnet".into(),
        };
        write_network(dir, layout)?;
    }
    let mut homes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.toml").exists())
        .collect();
    homes.sort();
    let mut prepared = Vec::new();
    for home in &homes {
        let config = Config::load(home, []).map_err(|e| e.to_string())?;
        prepared.push(prepare(home, config).await?);
    }
    let genesis = prepared
        .first()
        .ok_or("no validator homes")?
        .genesis
        .clone();
    let faucet = read_key(&dir.join("faucet.key")).map_err(|e| e.to_string())?;
    let faucet_address = genesis.address(faucet.public_key());
    println!(
        "chatpay devnet: {} validators, chain {}, state in {}/ ({})",
        prepared.len(),
        genesis.chain_id,
        dir.display(),
        if fresh { "new chain" } else { "resumed" }
    );
    for (i, p) in prepared.iter().enumerate() {
        println!(
            "  validator {i}  {}  (client API + validator service)",
            p.config.listen
        );
    }
    println!(
        "faucet: {faucet_address} (key {}/faucet.key)",
        dir.display()
    );
    println!(
        "next:  cargo run -q -p chatpay-node -- status --node {}",
        prepared[0].config.listen
    );
    println!("       cargo run -q -p chatpay-wallet -- init");
    println!(
        "       cargo run -q -p chatpay-wallet -- accounts import faucet --key-file {}/faucet.key",
        dir.display()
    );
    println!("Ctrl-C stops it; run again to resume this chain, with --reset for a new one.");
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for p in prepared {
        let mut stop = stop.clone();
        tasks.spawn(run_prepared(p, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    let mut failure = None;
    tokio::select! {
        () = terminated() => {}
        Some(ended) = tasks.join_next() => {
            failure = Some(match ended {
                Ok(Ok(())) => "a validator stopped".to_string(),
                Ok(Err(e)) => e,
                Err(e) => e.to_string(),
            });
        }
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    failure.map_or(Ok(()), Err)
}

async fn cmd_status(node: &str, height: Option<u64>) -> Result<()> {
    let mut client = pb::client_client::ClientClient::connect(format!("http://{node}"))
        .await
        .map_err(|e| format!("cannot reach {node}: {e}"))?;
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(|s| format!("{node}: {}", s.message()))?
        .into_inner();
    println!("chain      {}", status.chain_id);
    println!("genesis    {}", hex::encode(&status.genesis_hash));
    println!("height     {}", status.committed_height);
    println!("validators {}", status.validators.len());
    let block = client
        .get_block(pb::GetBlockRequest {
            height: height.unwrap_or(status.committed_height),
        })
        .await
        .map_err(|s| format!("{node}: {}", s.message()))?
        .into_inner();
    if let Some(header) = block.block.and_then(|b| b.header) {
        let header = chatpay_proto::BlockHeader::try_from(header).map_err(|e| e.to_string())?;
        println!("at         {}", header.height);
        println!("block      {}", header.hash());
        println!("round      {}", header.round);
        println!("state      {}", header.state_root);
        println!("txs        {}", header.tx_count);
    }
    Ok(())
}
