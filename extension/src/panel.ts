/**
 * The "cellship" sidebar panel: tabs for jobs and batch runs, a detail view for one of
 * them, and the polling that keeps it live. It first asks the server extension for its
 * version and says plainly when the extension is missing or speaks another API.
 */
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { api, checkServer, IVersion } from './api';
import { BatchDetailView, BatchesView } from './batches';
import { el } from './dom';
import { JobDetailView } from './jobdetail';
import { JobsView } from './jobs';
import { ModelsView } from './models';

export interface IPanelSettings {
  refreshInterval: number; // seconds
  defaultBackend: string;
  maxLogLines: number;
}

export const DEFAULT_SETTINGS: IPanelSettings = {
  refreshInterval: 2,
  defaultBackend: 'local',
  maxLogLines: 2000
};

type Tab = 'jobs' | 'batches' | 'models';

export class CellshipPanel extends Widget {
  settings: IPanelSettings = { ...DEFAULT_SETTINGS };
  private readonly banner = el('div', 'cs-banner');
  private readonly tabBar = el('div', 'cs-tabs');
  private readonly body = el('div', 'cs-body');
  private readonly jobsView: JobsView;
  private readonly batchesView: BatchesView;
  private readonly modelsView: ModelsView;
  private readonly tabButtons = new Map<Tab, HTMLButtonElement>();
  private tab: Tab = 'jobs';
  private detail: JobDetailView | BatchDetailView | null = null;
  private timer: number | undefined;
  private ticker: number | undefined;
  private ready = false;
  private version: IVersion | undefined;
  private refreshing: Promise<void> | null = null;

  constructor(private readonly commands: CommandRegistry) {
    super();
    this.id = 'cellship-panel';
    this.addClass('cs-panel');
    this.title.caption = 'cellship: jobs, batch runs, models';
    const header = el('div', 'cs-header');
    header.append(el('span', 'cs-title', 'cellship'));
    for (const [tab, label] of [
      ['jobs', 'Jobs'],
      ['batches', 'Batch runs'],
      ['models', 'Models']
    ] as [Tab, string][]) {
      const node = el('button', 'cs-tab', label);
      node.type = 'button';
      node.dataset.tab = tab;
      node.addEventListener('click', () => this.showTab(tab));
      this.tabButtons.set(tab, node);
      this.tabBar.appendChild(node);
    }
    this.banner.hidden = true;
    this.jobsView = new JobsView(id => this.showJob(id));
    this.batchesView = new BatchesView(id => this.showBatch(id));
    this.modelsView = new ModelsView(commands);
    this.node.append(header, this.banner, this.tabBar, this.body);
    this.showTab('jobs', false);
  }

  /** Check the server extension, then start polling. */
  async start(): Promise<void> {
    const { problem, version } = await checkServer();
    this.version = version;
    if (problem) {
      this.banner.textContent = problem;
      this.banner.hidden = false;
      this.tabBar.hidden = true;
      this.body.hidden = true;
      this.node.dataset.state = 'unavailable';
      return;
    }
    // A tab appears only for what the server extension offers (models came later).
    this.tabButtons.get('models')!.hidden = !this.capabilities.includes('models');
    this.ready = true;
    this.node.dataset.state = 'ready';
    this.node.dataset.version = version?.version ?? '';
    this.schedule(0);
    this.ticker = window.setInterval(() => this.tick(), 1000);
  }

  setSettings(settings: IPanelSettings): void {
    this.settings = settings;
    if (this.ready) {
      this.schedule(this.settings.refreshInterval * 1000);
    }
  }

  showTab(tab: Tab, refresh = true): void {
    this.tab = tab;
    this.closeDetail();
    for (const [name, node] of this.tabButtons) {
      node.classList.toggle('cs-mod-active', name === tab);
    }
    const views = { jobs: this.jobsView, batches: this.batchesView, models: this.modelsView };
    this.body.replaceChildren(views[tab].node);
    if (refresh) {
      void this.refresh();
    }
  }

  showJob(id: string): void {
    this.closeDetail();
    const view = new JobDetailView(id, {
      commands: this.commands,
      maxLogLines: this.settings.maxLogLines,
      onBack: () => this.showTab('jobs'),
      onChanged: () => void this.refresh()
    });
    this.detail = view;
    this.body.replaceChildren(view.node);
    void this.refresh();
  }

  showBatch(id: string): void {
    this.closeDetail();
    const view = new BatchDetailView(id, this.commands, () => this.showTab('batches'), () => void this.refresh());
    this.detail = view;
    this.tab = 'batches';
    this.body.replaceChildren(view.node);
    void this.refresh();
  }

  /** Fetch what the current view shows (one request in flight at a time). */
  refresh(): Promise<void> {
    if (!this.ready) {
      return Promise.resolve();
    }
    if (!this.refreshing) {
      this.refreshing = this.load()
        .catch(error => this.showProblem(error))
        .finally(() => {
          this.refreshing = null;
        });
    }
    return this.refreshing;
  }

  private async load(): Promise<void> {
    const detail = this.detail;
    if (detail instanceof JobDetailView) {
      const job = await api.job(detail.id);
      if (this.detail !== detail) {
        return;
      }
      detail.update(job);
      if (detail.wantsMetrics) {
        detail.updateMetrics((await api.metrics(detail.id)).series);
      }
    } else if (detail instanceof BatchDetailView) {
      detail.update(await api.batch(detail.id));
    } else if (this.tab === 'jobs') {
      this.jobsView.update((await api.jobs()).jobs);
    } else if (this.tab === 'models') {
      this.modelsView.update((await api.models()).models);
    } else {
      this.batchesView.update((await api.batches()).batches);
    }
    this.banner.hidden = true;
  }

  private showProblem(error: unknown): void {
    this.banner.textContent = `cellship: ${(error as Error).message ?? String(error)}`;
    this.banner.hidden = false;
  }

  private schedule(delay: number): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(async () => {
      if (this.isVisible) {
        await this.refresh();
      }
      this.schedule(this.settings.refreshInterval * 1000);
    }, delay);
  }

  private tick(): void {
    if (!this.isVisible) {
      return;
    }
    if (this.detail instanceof JobDetailView) {
      this.detail.tick();
    } else if (!this.detail && this.tab === 'jobs') {
      this.jobsView.tick();
    }
  }

  private closeDetail(): void {
    if (this.detail instanceof JobDetailView) {
      this.detail.dispose();
    }
    this.detail = null;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  get capabilities(): string[] {
    return this.version?.capabilities ?? [];
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    window.clearInterval(this.ticker);
    this.closeDetail();
    super.dispose();
  }
}
