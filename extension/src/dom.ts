/**
 * DOM helpers of the panel. Every piece of server data (job names, log lines, errors,
 * parameters) goes in as text, never as HTML: `el()` only ever sets `textContent`, so a
 * job named `<img src=x onerror=alert(1)>` shows those characters and runs nothing.
 */

const STATUSES = new Set(['pending', 'running', 'succeeded', 'failed', 'cancelled']);

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text?: string | null
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined && text !== null) {
    node.textContent = text;
  }
  return node;
}

export function button(
  label: string,
  title: string,
  onClick: () => void,
  className = ''
): HTMLButtonElement {
  const node = el('button', `jp-Button cs-button ${className}`.trim(), label);
  node.title = title;
  node.type = 'button';
  node.addEventListener('click', event => {
    event.stopPropagation();
    onClick();
  });
  return node;
}

/** A status badge; the status selects a CSS class only when it is a known status. */
export function badge(status: string): HTMLSpanElement {
  const node = el('span', 'cs-badge', status);
  setBadge(node, status);
  return node;
}

export function setBadge(node: HTMLElement, status: string): void {
  node.textContent = status;
  node.className = 'cs-badge';
  if (STATUSES.has(status)) {
    node.classList.add(`cs-status-${status}`);
  }
  node.dataset.status = status;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '-';
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)} s`;
  }
  const total = Math.round(seconds);
  const minutes = Math.floor(total / 60);
  if (minutes < 60) {
    return `${minutes} min ${String(total % 60).padStart(2, '0')} s`;
  }
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** Seconds a job has run: from the server's numbers, advanced locally while it runs. */
export function liveDuration(
  started: string | null,
  ended: string | null,
  status: string
): number | null {
  if (!started) {
    return null;
  }
  const start = Date.parse(started);
  const end = ended ? Date.parse(ended) : status === 'running' || status === 'pending' ? Date.now() : NaN;
  return isNaN(end) ? null : Math.max(0, (end - start) / 1000);
}

export function formatTime(iso: string | null): string {
  if (!iso) {
    return '-';
  }
  const date = new Date(iso);
  return date.toLocaleString(undefined, {
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit'
  });
}

const SVG = 'http://www.w3.org/2000/svg';

/** A sparkline of one metric curve as inline SVG (no chart library, nothing as HTML). */
export function sparkline(
  steps: number[],
  values: (number | null)[],
  width = 120,
  height = 28
): SVGSVGElement {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.classList.add('cs-sparkline');
  const points: [number, number][] = [];
  steps.forEach((step, i) => {
    const value = values[i];
    if (value !== null && value !== undefined && isFinite(value)) {
      points.push([step, value]);
    }
  });
  if (points.length === 0) {
    return svg;
  }
  const xs = points.map(p => p[0]);
  const ys = points.map(p => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x: number) => (x1 === x0 ? width / 2 : ((x - x0) / (x1 - x0)) * (width - 4) + 2);
  const sy = (y: number) =>
    y1 === y0 ? height / 2 : height - 2 - ((y - y0) / (y1 - y0)) * (height - 4);
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' '));
  line.setAttribute('fill', 'none');
  line.classList.add('cs-sparkline-line');
  svg.appendChild(line);
  const [lx, ly] = points[points.length - 1];
  const dot = document.createElementNS(SVG, 'circle');
  dot.setAttribute('cx', sx(lx).toFixed(1));
  dot.setAttribute('cy', sy(ly).toFixed(1));
  dot.setAttribute('r', '2');
  dot.classList.add('cs-sparkline-dot');
  svg.appendChild(dot);
  return svg;
}

export function formatValue(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  if (typeof value === 'string') {
    return value;
  }
  return JSON.stringify(value);
}
