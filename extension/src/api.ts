/**
 * The one place the panel talks to the server extension (jupyterlab-git's `requestAPI`
 * habit): URLs, authentication and the `{code, message}` error shape live here only.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The REST API version this panel was built for (`/cellship/api/version`). */
export const API_VERSION = 1;
const PREFIX = 'cellship/api';

/** An error answered by the server extension (or its absence: code 404 on `version`). */
export class CellshipAPIError extends Error {
  constructor(
    readonly code: number,
    message: string
  ) {
    super(message);
  }
}

export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, PREFIX, endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message: string =
      data && typeof data.message === 'string'
        ? data.message
        : `${response.status} ${response.statusText}`;
    throw new CellshipAPIError(response.status, message);
  }
  return data as T;
}

/** One server-sent event: its `event` name (`message` by default), `data` and `id`. */
export interface IServerEvent {
  event: string;
  data: string;
  id: string | null;
}

/**
 * Read a server-sent-events endpoint with `fetch`, so that the request goes through
 * `ServerConnection.makeRequest` and is authenticated like every other one (the token in
 * the Authorization header, the XSRF cookie): EventSource cannot send headers and would
 * need the token in the URL, where proxies and server logs keep it.
 *
 * Resolves when the server closes the stream, rejects on a network or HTTP error; an
 * abort through `signal` resolves. `lastEventId` resumes the stream (the server's cursor).
 */
export async function streamEvents(
  endPoint: string,
  options: { signal: AbortSignal; lastEventId?: string | null; onEvent: (event: IServerEvent) => void }
): Promise<void> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, PREFIX, endPoint);
  const headers: Record<string, string> = { Accept: 'text/event-stream' };
  if (options.lastEventId) {
    headers['Last-Event-ID'] = options.lastEventId;
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      url,
      { headers, signal: options.signal, cache: 'no-store' },
      settings
    );
  } catch (error) {
    if (options.signal.aborted) {
      return;
    }
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  if (!response.ok || !response.body) {
    const text = await response.text().catch(() => '');
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = JSON.parse(text) as { message?: unknown };
      if (typeof body.message === 'string') {
        message = body.message;
      }
    } catch {
      // not the {code, message} shape: keep the status line
    }
    throw new CellshipAPIError(response.status, message);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new EventStreamParser(options.onEvent);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return;
      }
      parser.push(value);
    }
  } catch (error) {
    if (options.signal.aborted) {
      return;
    }
    throw new ServerConnection.NetworkError(error as TypeError);
  }
}

/** The text/event-stream format (WHATWG HTML, 9.2.6), fed in chunks of any size. */
class EventStreamParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | null = null;

  constructor(private readonly onEvent: (event: IServerEvent) => void) {}

  push(chunk: string): void {
    this.buffer += chunk;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    // The last piece has no line end yet (or is empty): keep it for the next chunk.
    this.buffer = lines.pop() ?? '';
    for (const line of lines) {
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length) {
        this.onEvent({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
      }
      this.data = [];
      this.event = '';
      return;
    }
    if (line.startsWith(':')) {
      return; // a comment: the server's keepalive
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    if (field === 'data') {
      this.data.push(value);
    } else if (field === 'event') {
      this.event = value;
    } else if (field === 'id') {
      this.id = value;
    }
  }
}

export type Status = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface IVersion {
  version: string;
  api_version: number;
  capabilities: string[];
}

export interface IReplicaBrief {
  key: string;
  label: string;
  state: string;
  /** The node a Kubernetes replica's pod is bound to; null locally and until scheduled. */
  node?: string | null;
}

export interface IReplica extends IReplicaBrief {
  type: string;
  index: number;
  exit_code: number | null;
  pid: number | null;
  restarts: number;
  address: string | null;
  pod?: string | null;
  reason?: string | null;
  diagnosis?: string | null;
}

/** A job found in the cluster by its labels that this machine's store does not have
 * (submitted from another kernel or machine): no local job dir, no logs here. */
export interface IClusterJob {
  id: string;
  name: string;
  namespace: string | null;
  status: string | null;
  /** replica -> pod phase */
  pods: Record<string, string>;
  /** replica -> the node its pod runs on (null until scheduled) */
  nodes: Record<string, string | null>;
  created: string | null;
  user: string | null;
  origin: 'cluster';
  backend: 'kubernetes';
}

export interface IClusterJobs {
  cluster_jobs: IClusterJob[];
  /** Why none were listed (no cluster configured, refused, no answer); null: it answered. */
  cluster_reason: string | null;
}

/** A running `cellship serve` of this machine (its registry). */
export interface IServer {
  pid: number;
  host: string;
  port: number;
  grpc_port: number | null;
  url: string;
  models: string[];
  repository: Record<string, string>;
  started: number; // seconds since the epoch
}

/** A served model on Kubernetes. */
export interface IDeployment {
  name: string;
  namespace: string;
  kind: string;
  image: string;
  model_name: string;
  port: number;
  desired: number;
  ready: number;
  created: string;
  user: string | null;
  url: string;
}

export interface IDeploymentList {
  deployments: IDeployment[];
  count: number;
  /** Why the list is empty without asking (no cluster, unreachable, forbidden). */
  reason: string | null;
}

export interface IJobSummary {
  id: string;
  name: string;
  status: Status;
  backend: string;
  /** Who submitted it (`cellship.io/user`: the hub or OS user); null when unknown. */
  user: string | null;
  strategy: string | null;
  workers: number | null;
  ps: number;
  gpus: number;
  replicas: IReplicaBrief[];
  created: string | null;
  started: string | null;
  ended: string | null;
  duration: number | null;
  error: string | null;
  detached: boolean;
  restarts: number;
  batch_run?: string | null;
}

export interface IJob extends IJobSummary {
  replicas: IReplica[];
  job_dir: string;
  output_dir: string;
  logdir: string;
  saved_models: string[];
  metrics: Record<string, { step: number; value: number }>;
  events: { time: string | null; kind: string; message: string }[];
  output_path: string | null;
  job_path: string | null;
}

export interface IJobList {
  jobs: IJobSummary[];
  count: number;
  total: number;
}

export interface IJobQuery {
  limit: number;
  offset?: number;
  status?: Status | '';
  name?: string;
}

export interface ILogLine {
  replica: string;
  text: string;
}

export interface IMetricSeries {
  run: string;
  tag: string;
  steps: number[];
  values: (number | null)[];
  last: number | null;
}

export interface IFiles {
  path: string;
  type: 'file' | 'directory';
  entries?: { name: string; type: string; size: number }[];
  content?: string;
}

export interface IBatchSummary {
  id: string;
  name: string;
  notebook: string;
  status: Status;
  backend: string;
  parallel: number;
  runs: number;
  run_statuses: Record<string, number>;
  created: string | null;
  started: string | null;
  ended: string | null;
  error: string | null;
}

export interface IBatch extends IBatchSummary {
  output_path: string | null;
  rows: Record<string, unknown>[];
}

export interface IModelVersion {
  name: string;
  version: number;
  path: string;
  file_path: string | null;
  created: string | null;
  source: string;
  signature: string;
  metrics: Record<string, number | null>;
}

export interface IRelease {
  id: string;
  kind: 'release' | 'rollback';
  model: string;
  target: string;
  outcome: string;
  user: string;
  started: string | null;
  ended: string | null;
  version: number | null;
  previous: number | null;
  notebook: string | null;
  notebook_path: string | null;
  parameters: Record<string, unknown>;
  gates: { gate: string; value?: number | null; passed?: boolean }[];
  failed_step: string | null;
  reason: string | null;
  details: Record<string, unknown>;
}

export interface INewRelease {
  notebook: string;
  model: string;
  to: 'local' | 'kubernetes';
  gates: string[];
  parameters?: Record<string, unknown>;
  registry?: string;
  base?: string;
  namespace?: string;
}

export const api = {
  version: () => requestAPI<IVersion>('version'),
  /** A page of jobs, newest first, filtered on the server (`name`: a substring). */
  jobs: (query: IJobQuery) => {
    const params = new URLSearchParams({ limit: String(query.limit), offset: String(query.offset ?? 0) });
    if (query.status) {
      params.set('status', query.status);
    }
    if (query.name) {
      params.set('name', query.name);
    }
    return requestAPI<IJobList>(`jobs?${params.toString()}`);
  },
  job: (id: string) => requestAPI<IJob>(`jobs/${encodeURIComponent(id)}`),
  cancel: (id: string) =>
    requestAPI<IJob>(`jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' }),
  remove: (id: string) =>
    requestAPI<null>(`jobs/${encodeURIComponent(id)}`, { method: 'DELETE' }),
  metrics: (id: string) =>
    requestAPI<{ series: IMetricSeries[] }>(
      `jobs/${encodeURIComponent(id)}/metrics?max_points=120`
    ),
  tensorboard: (id: string) =>
    requestAPI<{ url: string; port: number }>(
      `jobs/${encodeURIComponent(id)}/tensorboard`,
      { method: 'POST' }
    ),
  files: (id: string, path: string) =>
    requestAPI<IFiles>(
      `jobs/${encodeURIComponent(id)}/files?path=${encodeURIComponent(path)}`
    ),
  logsEndPoint: (id: string) => `jobs/${encodeURIComponent(id)}/logs`,
  batches: () => requestAPI<{ batches: IBatchSummary[] }>('batches'),
  batch: (id: string) => requestAPI<IBatch>(`batches/${encodeURIComponent(id)}`),
  cancelBatch: (id: string) =>
    requestAPI<IBatch>(`batches/${encodeURIComponent(id)}/cancel`, { method: 'POST' }),
  models: () => requestAPI<{ models: IModelVersion[] }>('models'),
  /** The cluster's jobs this store lacks (the jobs of the answer's first page are ignored). */
  clusterJobs: (status: Status | '') => {
    const params = new URLSearchParams({ limit: '1', cluster: '1' });
    if (status) {
      params.set('status', status);
    }
    return requestAPI<IClusterJobs>(`jobs?${params.toString()}`);
  },
  servers: () => requestAPI<{ servers: IServer[] }>('servers'),
  stopServer: (pid: number) =>
    requestAPI<IServer>(`servers/${encodeURIComponent(String(pid))}/stop`, { method: 'POST' }),
  deployments: () => requestAPI<IDeploymentList>('deployments'),
  undeploy: (name: string, namespace: string) =>
    requestAPI<{ name: string; namespace: string; kind: string; message: string }>(
      `deployments/${encodeURIComponent(name)}?namespace=${encodeURIComponent(namespace)}`,
      { method: 'DELETE' }
    ),
  /** The push channel (server-sent events: `hello`, then `changed`). */
  eventsEndPoint: 'events',
  releases: () => requestAPI<{ releases: IRelease[]; count: number }>('releases'),
  startRelease: (release: INewRelease) =>
    requestAPI<{ model: string; pid: number; log: string }>('releases', {
      method: 'POST',
      body: JSON.stringify(release)
    }),
  startBatch: (notebook: string, backend: string) =>
    requestAPI<IBatch>('batches', {
      method: 'POST',
      body: JSON.stringify({ notebook, backend })
    })
};

/**
 * What the panel says when the server side is not what it expects: the extension
 * missing (404 on `version`) or speaking another API version. Null when all is well.
 */
export async function checkServer(): Promise<{ problem: string | null; version?: IVersion }> {
  let version: IVersion;
  try {
    version = await api.version();
  } catch (error) {
    if (error instanceof CellshipAPIError && error.code === 404) {
      return {
        problem:
          'The cellship server extension is not running on this Jupyter server. ' +
          'Install cellship in the environment that runs Jupyter and enable it: ' +
          '`jupyter server extension enable cellship.server`, then restart Jupyter.'
      };
    }
    return { problem: `The cellship server extension did not answer: ${String(error)}` };
  }
  if (version.api_version !== API_VERSION) {
    return {
      problem:
        `The cellship server extension (cellship ${version.version}) speaks API ` +
        `version ${version.api_version}, but this panel needs version ${API_VERSION}. ` +
        'Install the same cellship version for Jupyter and the panel, then restart Jupyter ' +
        'and reload the page.',
      version
    };
  }
  return { problem: null, version };
}
