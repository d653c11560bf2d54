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
    const message =
      data && typeof data.message === 'string'
        ? data.message
        : `${response.status} ${response.statusText}`;
    throw new CellshipAPIError(response.status, message);
  }
  return data as T;
}

/**
 * The URL of a server-sent-events endpoint. EventSource cannot send headers, so the
 * token (when the page has one) rides in the query like Jupyter's own websockets; with
 * cookie login there is none and the cookie authenticates.
 */
export function streamURL(endPoint: string, query: Record<string, string>): string {
  const settings = ServerConnection.makeSettings();
  const params = new URLSearchParams(query);
  if (settings.token) {
    params.set('token', settings.token);
  }
  return URLExt.join(settings.baseUrl, PREFIX, endPoint) + '?' + params.toString();
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
}

export interface IReplica extends IReplicaBrief {
  type: string;
  index: number;
  exit_code: number | null;
  pid: number | null;
  restarts: number;
  address: string | null;
}

export interface IJobSummary {
  id: string;
  name: string;
  status: Status;
  backend: string;
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

export const api = {
  version: () => requestAPI<IVersion>('version'),
  jobs: () => requestAPI<IJobList>('jobs'),
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
  logsURL: (id: string) => streamURL(`jobs/${encodeURIComponent(id)}/logs`, {}),
  batches: () => requestAPI<{ batches: IBatchSummary[] }>('batches'),
  batch: (id: string) => requestAPI<IBatch>(`batches/${encodeURIComponent(id)}`),
  cancelBatch: (id: string) =>
    requestAPI<IBatch>(`batches/${encodeURIComponent(id)}/cancel`, { method: 'POST' }),
  models: () => requestAPI<{ models: IModelVersion[] }>('models'),
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
