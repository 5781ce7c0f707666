"""The interconnection report as one self-contained, printable HTML page (Italian or English).

Inline CSS, inline SVG charts, no script, no external asset: the file opens anywhere, prints on
A4 (a page number on every page, table headers repeated, no row cut in two) and can be archived
as it is. Every text from the config or the machines is escaped.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gateway.report.availability import Availability, Outage
from gateway.report.interconnection import InterconnectionReport, SignalInfo

__all__ = ["LANGUAGES", "Lang", "render_html"]

Lang = Literal["it", "en"]
LANGUAGES: tuple[Lang, ...] = ("it", "en")

#: Outages listed one by one; beyond this the longest are kept and the others counted.
MAX_OUTAGES = 100

TEXT: dict[str, dict[Lang, str]] = {
    "title": {"it": "Rapporto di interconnessione", "en": "Interconnection report"},
    "period": {"it": "Periodo", "en": "Period"},
    "times_in": {"it": "Orari nel fuso {tz}", "en": "Times in {tz}"},
    "generated": {
        "it": "Generato il {time} dal gateway «{gateway}», versione {version}",
        "en": "Generated on {time} by gateway “{gateway}”, version {version}",
    },
    "cut": {
        "it": "Il periodo richiesto termina il {asked}: il rapporto si ferma all'istante della sua generazione.",
        "en": "The period asked for ends on {asked}: the report stops at the time it was generated.",
    },
    "summary": {"it": "Sintesi", "en": "Summary"},
    "machine": {"it": "Macchina", "en": "Machine"},
    "tags": {"it": "Etichette dei dati", "en": "Data tags"},
    "connected": {"it": "Collegamento attivo", "en": "Link up"},
    "signals_n": {"it": "Segnali raccolti", "en": "Signals collected"},
    "samples_n": {"it": "Campioni registrati", "en": "Samples stored"},
    "writes_n": {"it": "Scritture verso la macchina", "en": "Writes to the machine"},
    "writes_sum": {"it": "{written} eseguite, {refused} non eseguite", "en": "{written} done, {refused} not done"},
    "sinks_n": {"it": "Destinazioni dei dati", "en": "Data destinations"},
    "s_connection": {"it": "1. Macchina e collegamento", "en": "1. Machine and connection"},
    "connector": {"it": "Connettore", "en": "Connector"},
    "protocol": {"it": "Protocollo", "en": "Protocol"},
    "endpoint": {"it": "Indirizzo (endpoint)", "en": "Address (endpoint)"},
    "security": {"it": "Sicurezza del canale", "en": "Channel security"},
    "identity": {"it": "Identità del gateway", "en": "Gateway identity"},
    "sampling": {"it": "Acquisizione", "en": "Acquisition"},
    "static_tags": {"it": "Etichette aggiunte", "en": "Tags added"},
    "feeds": {"it": "Scrive in", "en": "Writes to"},
    "writable": {"it": "Campi scrivibili da remoto", "en": "Fields writable remotely"},
    "unknown": {"it": "–", "en": "–"},
    "sec.opcua_none": {"it": "nessuna (né firmato né cifrato)", "en": "none (not signed, not encrypted)"},
    "sec.opcua": {"it": "{policy} / {mode}", "en": "{policy} / {mode}"},
    "sec.tls": {"it": "TLS (cifrato)", "en": "TLS (encrypted)"},
    "sec.plain": {"it": "nessuna (non cifrato)", "en": "none (not encrypted)"},
    "sec.modbus": {"it": "nessuna (Modbus non ne prevede)", "en": "none (Modbus has none)"},
    "sec.s7": {"it": "nessuna (S7 PUT/GET non ne prevede)", "en": "none (S7 PUT/GET has none)"},
    "id.anonymous": {"it": "anonimo", "en": "anonymous"},
    "id.user": {"it": "utente e password ({user})", "en": "user name and password ({user})"},
    "id.x509": {"it": "certificato utente X.509", "en": "X.509 user certificate"},
    "id.client_certificate": {"it": "certificato client", "en": "client certificate"},
    "id.none": {"it": "nessuna", "en": "none"},
    "id.modbus": {"it": "nessuna (Modbus non ne prevede)", "en": "none (Modbus has none)"},
    "id.s7": {"it": "connessione di tipo {type}", "en": "connection type {type}"},
    "samp.subscription": {
        "it": "sottoscrizione, intervallo di pubblicazione {publishing}",
        "en": "subscription, publishing interval {publishing}",
    },
    "samp.subscription_sampling": {
        "it": "sottoscrizione, intervallo di pubblicazione {publishing}, di campionamento {sampling}",
        "en": "subscription, publishing interval {publishing}, sampling interval {sampling}",
    },
    "samp.poll": {"it": "lettura ogni {interval}", "en": "read every {interval}"},
    "samp.published": {"it": "alla pubblicazione, QoS {qos}", "en": "as published, QoS {qos}"},
    "lim.allowed": {"it": "valori ammessi: {allowed}", "en": "allowed values: {allowed}"},
    "lim.min": {"it": "min {min}", "en": "min {min}"},
    "lim.max": {"it": "max {max}", "en": "max {max}"},
    "lim.pattern": {"it": "formato {pattern}", "en": "pattern {pattern}"},
    "lim.none": {"it": "senza limiti", "en": "no limit"},
    "none": {"it": "nessuno", "en": "none"},
    "s_link": {"it": "2. Disponibilità del collegamento", "en": "2. Link availability"},
    "link_intro": {
        "it": "Dal registro del collegamento del gateway: il connettore è collegato quando il suo stato è "
        "«running»; ogni altro stato, o il gateway fermo, è un'interruzione.",
        "en": "From the gateway's link journal: the connector is connected while its state is “running”; "
        "any other state, or the gateway not running, is an outage.",
    },
    "in_range": {"it": "Tempo nel periodo", "en": "Time in the period"},
    "up_time": {"it": "Collegato", "en": "Connected"},
    "down_time": {"it": "Non collegato", "en": "Not connected"},
    "unknown_time": {"it": "Non noto", "en": "Unknown"},
    "unknown_why": {
        "it": "nessuna registrazione del collegamento prima del {time}: per quel tempo il collegamento non è noto",
        "en": "no record of the link before {time}: for that time the link is unknown",
    },
    "no_journal": {
        "it": "il registro del collegamento non contiene nulla per questo periodo: la disponibilità non è nota",
        "en": "the link journal holds nothing for this period: the availability is unknown",
    },
    "availability": {"it": "Disponibilità", "en": "Availability"},
    "of_range": {"it": "del periodo", "en": "of the period"},
    "of_known": {"it": "del tempo noto", "en": "of the known time"},
    "outages": {"it": "Interruzioni", "en": "Outages"},
    "no_outage": {"it": "Nessuna interruzione nel periodo.", "en": "No outage in the period."},
    "start": {"it": "Inizio", "en": "Start"},
    "end": {"it": "Fine", "en": "End"},
    "duration": {"it": "Durata", "en": "Duration"},
    "cause": {"it": "Causa", "en": "Cause"},
    "before_range": {"it": "(già in corso)", "en": "(already going on)"},
    "after_range": {"it": "(ancora in corso)", "en": "(still going on)"},
    "estimated": {
        "it": "ora stimata: ultimo segnale di vita del gateway (±60 s)",
        "en": "estimated time: the gateway's last sign of life (±60 s)",
    },
    "more_outages": {
        "it": "Altre {n} interruzioni più brevi, per un totale di {total}, non sono elencate.",
        "en": "{n} more, shorter outages, {total} in all, are not listed.",
    },
    "cause.connection": {"it": "collegamento perso o non riuscito", "en": "connection lost or failed"},
    "cause.credentials": {"it": "credenziali rifiutate", "en": "credentials refused"},
    "cause.starting": {"it": "avvio del connettore", "en": "connector starting"},
    "cause.stopped": {
        "it": "connettore fermato (arresto o ricarica della configurazione)",
        "en": "connector stopped (gateway stop or configuration reload)",
    },
    "cause.gateway_stopped": {"it": "gateway fermo (arresto regolare)", "en": "gateway not running (stopped)"},
    "cause.gateway_lost": {"it": "gateway fermo (arresto non regolare)", "en": "gateway not running (unclean stop)"},
    "cause.other": {"it": "altro", "en": "other"},
    "gateway_down": {"it": "con il gateway fermo", "en": "with the gateway not running"},
    "s_signals": {"it": "3. Segnali raccolti", "en": "3. Signals collected"},
    "signals_intro": {
        "it": "Ogni serie della macchina presente nello storico integrato ({source}) nel periodo: primo e ultimo "
        "campione, numero di campioni e andamento (media e minimo–massimo; per i testi, il valore).",
        "en": "Every series of the machine in the embedded historian ({source}) in the period: first and last "
        "sample, number of samples and trend (mean and min–max; for text, the value).",
    },
    "no_history": {
        "it": "La configurazione non ha uno storico integrato (sink di tipo historian): i segnali non si possono "
        "elencare.",
        "en": "The configuration has no embedded historian (a sink of type historian): the signals cannot be listed.",
    },
    "retention_cut": {
        "it": "Lo storico conserva i dati per {retention}: i campioni anteriori al {time} sono stati cancellati e "
        "non sono contati qui. Per documentare un periodo, la conservazione dello storico deve coprirlo.",
        "en": "The historian keeps data for {retention}: samples before {time} were deleted and are not counted "
        "here. To document a period, the historian's retention must cover it.",
    },
    "journal_since": {"it": "dal {time}", "en": "since {time}"},
    "no_signals": {
        "it": "Nessun campione della macchina nel periodo.",
        "en": "No sample of the machine in the period.",
    },
    "signal": {"it": "Segnale", "en": "Signal"},
    "first": {"it": "Primo campione", "en": "First sample"},
    "last": {"it": "Ultimo campione", "en": "Last sample"},
    "samples": {"it": "Campioni", "en": "Samples"},
    "trend": {"it": "Andamento", "en": "Trend"},
    "range_values": {"it": "min {min} · max {max}", "en": "min {min} · max {max}"},
    "s_writes": {
        "it": "4. Scritture verso la macchina (caricamento da remoto)",
        "en": "4. Writes to the machine (remote loading)",
    },
    "writes_intro": {
        "it": "Dal registro delle scritture del gateway ({folder}): ogni richiesta di scrivere un valore sulla "
        "macchina (programma, parametro, comando), chi l'ha fatta, il valore precedente, quello richiesto, "
        "quello riletto dalla macchina dopo la scrittura e l'esito.",
        "en": "From the gateway's audit trail ({folder}): every request to write a value to the machine "
        "(program, parameter, command), who made it, the value before, the value asked for, the value read back "
        "from the machine after the write, and the outcome.",
    },
    "no_writes": {"it": "Nessuna scrittura nel periodo.", "en": "No write in the period."},
    "time": {"it": "Ora", "en": "Time"},
    "who": {"it": "Chi", "en": "Who"},
    "field": {"it": "Campo", "en": "Field"},
    "change": {"it": "Valore precedente → richiesto", "en": "Value before → asked for"},
    "read_back": {"it": "Riletto", "en": "Read back"},
    "result": {"it": "Esito", "en": "Outcome"},
    "result.written": {"it": "eseguita", "en": "written"},
    "result.refused_limits": {"it": "rifiutata: fuori dai limiti", "en": "refused: outside the limits"},
    "result.refused_type": {"it": "rifiutata: tipo errato", "en": "refused: wrong type"},
    "result.not_writable": {"it": "rifiutata: campo non scrivibile", "en": "refused: field not writable"},
    "result.forbidden": {"it": "rifiutata: ruolo non autorizzato", "en": "refused: role not allowed"},
    "result.refused_by_machine": {"it": "rifiutata dalla macchina", "en": "refused by the machine"},
    "result.timeout": {"it": "nessuna risposta in tempo", "en": "no answer in time"},
    "result.error": {"it": "errore", "en": "error"},
    "s_sinks": {"it": "5. Dove vanno i dati", "en": "5. Where the data goes"},
    "sink": {"it": "Destinazione", "en": "Destination"},
    "type": {"it": "Tipo", "en": "Type"},
    "where": {"it": "Indirizzo o file", "en": "Address or file"},
    "retention": {"it": "Conservazione", "en": "Retention"},
    "this_machine": {"it": "Riceve i dati di questa macchina", "en": "Receives this machine's data"},
    "yes": {"it": "sì", "en": "yes"},
    "no": {"it": "no", "en": "no"},
    "forever": {"it": "senza limite", "en": "no limit"},
    "s_gateway": {"it": "6. Gateway e configurazione", "en": "6. Gateway and configuration"},
    "gateway": {"it": "Gateway", "en": "Gateway"},
    "version": {"it": "Versione del software", "en": "Software version"},
    "files": {"it": "File di configurazione", "en": "Configuration files"},
    "sha": {"it": "Impronta SHA-256 della configurazione", "en": "SHA-256 of the configuration"},
    "sha_note": {
        "it": "calcolata sui nomi e sul contenuto dei file, come la mostrano /api/status e la pagina Connessioni "
        "del gateway in esecuzione",
        "en": "computed over the files' names and contents, as /api/status and the Connections page of the "
        "running gateway show it",
    },
    "sources": {"it": "Registri letti", "en": "Records read"},
    "source.history": {"it": "storico integrato", "en": "embedded historian"},
    "source.link": {"it": "registro del collegamento", "en": "link journal"},
    "source.audit": {"it": "registro delle scritture", "en": "audit trail"},
    "s_scope": {
        "it": "7. Cosa mostra e cosa non certifica questo rapporto",
        "en": "7. What this report shows and what it does not certify",
    },
    "footer": {
        "it": "Rapporto di interconnessione · {machine} · {period}",
        "en": "Interconnection report · {machine} · {period}",
    },
}

SCOPE: dict[Lang, list[tuple[str, str]]] = {
    "it": [
        (
            "Cosa mostra",
            "Ciò che il gateway ha registrato sulla macchina nel periodo: il collegamento (protocollo, indirizzo, "
            "sicurezza), i segnali ricevuti con il primo e l'ultimo campione e il loro numero, il tempo di "
            "collegamento attivo e le interruzioni, le scritture inviate alla macchina con l'esito e il valore "
            "riletto, le destinazioni dei dati. Le fonti sono i registri del gateway (storico integrato, registro "
            "del collegamento, registro delle scritture) e la sua configurazione, identificata dall'impronta "
            "SHA-256 riportata sopra.",
        ),
        (
            "Cosa non certifica",
            "Non è una perizia tecnica né un attestato di conformità e non certifica che il bene possieda le "
            "caratteristiche dell'allegato A alla legge 11 dicembre 2016, n. 232 (Industria 4.0 / Transizione 4.0) "
            "né altri requisiti: quella valutazione spetta al tecnico che redige la perizia (ingegnere o perito "
            "industriale iscritto all'albo) o all'ente di certificazione accreditato, che può usare questo rapporto "
            "come elemento di prova. Non attesta l'identità fisica della macchina (costruttore, matricola, "
            "collocazione), che va verificata sul posto, né la sicurezza, né lo scambio di dati con sistemi diversi "
            "dalle destinazioni elencate (ERP, MES). I registri possono essere incompleti: il tempo prima della "
            "prima registrazione del collegamento è indicato come non noto, e un arresto non regolare del gateway è "
            "datato con un'incertezza fino a 60 secondi. Il rapporto è prodotto dal gateway stesso e non è firmato: "
            "la sua integrità va garantita da chi lo conserva (ad esempio con firma digitale o marca temporale).",
        ),
        (
            "Requisiti 4.0 che aiuta a documentare",
            "L'interconnessione ai sistemi informatici di fabbrica con caricamento da remoto di istruzioni e/o "
            "part program (caratteristica obbligatoria per i beni dell'allegato A), nei termini della circolare "
            "Agenzia delle Entrate / MISE n. 4/E del 2017: scambio di informazioni per mezzo di un collegamento "
            "basato su specifiche documentate, disponibili pubblicamente e riconosciute internazionalmente "
            "(sezioni 1 e 3), identificazione della macchina in rete (sezione 1: indirizzo), scambio continuativo "
            "(sezioni 2 e 3), istruzioni caricate da remoto (sezione 4). Tra le ulteriori caratteristiche: il "
            "monitoraggio continuo delle condizioni di lavoro e dei parametri di processo (sezione 3) e il "
            "controllo in remoto (sezione 4).",
        ),
    ],
    "en": [
        (
            "What it shows",
            "What the gateway recorded about the machine in the period: the connection (protocol, address, "
            "security), the signals received with their first and last sample and how many, the time the link was "
            "up and its outages, the writes sent to the machine with their outcome and the value read back, and "
            "where the data goes. The sources are the gateway's own records (embedded historian, link journal, "
            "audit trail) and its configuration, identified by the SHA-256 shown above.",
        ),
        (
            "What it does not certify",
            "It is not a technical appraisal (perizia tecnica) nor a certificate of conformity, and it does not "
            "certify that the asset has the characteristics of annex A to Italian law 232 of 11 December 2016 "
            "(Industria 4.0 / Transizione 4.0) or any other requirement: that assessment belongs to the expert "
            "writing the appraisal (a chartered engineer or industrial expert) or to the accredited certification "
            "body, who may use this report as evidence. It does not attest the machine's physical identity "
            "(maker, serial number, location), which must be checked on site, nor its safety, nor data exchange "
            "with systems other than the destinations listed (ERP, MES). The records may be incomplete: the time "
            "before the link's first record is shown as unknown, and an unclean stop of the gateway is dated to "
            "within 60 seconds. The report is produced by the gateway itself and is not signed: whoever keeps it "
            "must guarantee its integrity (for instance with a digital signature or a time stamp).",
        ),
        (
            "4.0 criteria it helps document",
            "Interconnection to the factory's IT systems with remote loading of instructions and/or part "
            "programs (a mandatory characteristic of the assets of annex A), in the terms of circular 4/E of 2017 "
            "(Agenzia delle Entrate / MISE): exchange of information over a connection based on documented, "
            "publicly available and internationally recognised specifications (sections 1 and 3), the machine "
            "identified on the network (section 1: address), continuous exchange (sections 2 and 3), instructions "
            "loaded remotely (section 4). Among the further characteristics: continuous monitoring of working "
            "conditions and process parameters (section 3) and remote control (section 4).",
        ),
    ],
}

_CSS = """
@page { size: A4; margin: 16mm 14mm 18mm;
  @bottom-left { content: FOOTER; font: 8pt system-ui, sans-serif; color: #6b7280; }
  @bottom-right { content: counter(page) " / " counter(pages); font: 8pt system-ui, sans-serif; color: #6b7280; } }
* { box-sizing: border-box; }
html { font: 10pt/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
  color: #111827; background: #fff; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0 auto; max-width: 190mm; padding: 8mm 0; }
@media print { body { padding: 0; max-width: none; } }
h1 { font-size: 17pt; margin: 0 0 1mm; }
h2 { font-size: 12.5pt; margin: 7mm 0 2mm; padding-bottom: 1mm; border-bottom: 1.5px solid #111827;
  break-after: avoid; }
h3 { font-size: 10.5pt; margin: 4mm 0 1.5mm; break-after: avoid; }
p { margin: 1mm 0 2mm; }
.sub { color: #374151; margin: 0; }
.muted { color: #6b7280; }
.note { border-left: 3px solid #e69f00; background: #fffbeb; padding: 1.5mm 3mm; margin: 2mm 0; }
table { width: 100%; border-collapse: collapse; margin: 1mm 0 2mm; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
th, td { text-align: left; vertical-align: top; padding: 1.2mm 1.8mm; border-bottom: 0.6px solid #d1d5db; }
th { font-size: 8.5pt; color: #374151; background: #f3f4f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.time { white-space: nowrap; font-variant-numeric: tabular-nums; }
table.kv th { width: 38%; background: none; font-size: 9.5pt; color: #374151; }
.summary { display: grid; grid-template-columns: repeat(4, 1fr); gap: 2mm; margin: 3mm 0; }
.summary div { border: 0.8px solid #d1d5db; border-radius: 1.5mm; padding: 2mm 3mm; break-inside: avoid; }
.summary dt { font-size: 8.5pt; color: #374151; }
.summary dd { margin: .5mm 0 0; font-size: 12pt; font-weight: 700; font-variant-numeric: tabular-nums; }
.summary dd small { font-size: 8.5pt; font-weight: 400; color: #374151; }
.bar { display: block; width: 100%; height: 6mm; margin: 1mm 0; }
.legend { display: flex; gap: 5mm; font-size: 8.5pt; margin-bottom: 2mm; }
.sw { display: inline-block; width: 3mm; height: 3mm; margin-right: 1mm; vertical-align: -0.3mm; }
.spark { display: block; width: 46mm; height: 9mm; }
table.outages { table-layout: fixed; }
.states { color: #6b7280; font-size: 8pt; }
table.signals td:first-child { width: 27%; }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 8.5pt; overflow-wrap: anywhere; }
.tag { white-space: nowrap; }
td.ok { color: #00704f; font-weight: 600; }
td.ko { color: #b42d00; font-weight: 600; }
section { break-inside: auto; }
.scope h3 { margin-top: 3mm; }
"""

_UP, _DOWN, _UNKNOWN = "#009e73", "#d55e00", "#c7cbd1"


class _Format:
    """Numbers, times and durations the way the language writes them."""

    def __init__(self, lang: Lang, tz: tzinfo) -> None:
        self.lang = lang
        self.tz = tz

    def t(self, key: str, **params: Any) -> str:
        return TEXT[key][self.lang].format(**params)

    def count(self, value: int) -> str:
        text = f"{value:,}"
        return text.replace(",", ".") if self.lang == "it" else text

    def number(self, value: float, decimals: int | None = None) -> str:
        if decimals is None:
            size = abs(value)
            decimals = 0 if size >= 1000 else 1 if size >= 100 else 2 if size >= 1 else 3
        text = f"{value:,.{decimals}f}"
        if self.lang == "it":
            text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
        return text

    def percent(self, ratio: float | None, decimals: int = 2) -> str:
        if ratio is None:
            return "–"
        return f"{self.number(ratio * 100, decimals)} %"

    def moment(self, ns: int) -> datetime:
        """Exact (a float of Unix seconds would round the last nanosecond of a day into the next)."""
        return datetime.fromtimestamp(ns // 10**9, UTC).astimezone(self.tz)

    def time(self, ns: int, seconds: bool = True) -> str:
        moment = self.moment(ns)
        clock = "%H:%M:%S" if seconds else "%H:%M"
        return moment.strftime(("%d/%m/%Y " if self.lang == "it" else "%Y-%m-%d ") + clock)

    def date(self, ns: int) -> str:
        moment = self.moment(ns)
        return moment.strftime("%d/%m/%Y" if self.lang == "it" else "%Y-%m-%d")

    def duration(self, seconds: float) -> str:
        """Exact to the second, e.g. 3 g 04 h 05 min 06 s (3 d … in English); under 10 s, tenths."""
        if seconds < 10:
            return f"{self.number(seconds, 1)} s"
        whole = round(seconds)
        days, rest = divmod(whole, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        parts = []
        if days:
            parts.append(f"{days} {'g' if self.lang == 'it' else 'd'}")
        if days or hours:
            parts.append(f"{hours:02d} h" if parts else f"{hours} h")
        if days or hours or minutes:
            parts.append(f"{minutes:02d} min" if parts else f"{minutes} min")
        parts.append(f"{secs:02d} s" if parts else f"{secs} s")
        return " ".join(parts)

    def span(self, seconds: float) -> str:
        """A retention or a period: whole days or hours as such (30 g / 30 d), else a duration."""
        if seconds >= 86400 and seconds % 86400 == 0:
            return f"{int(seconds // 86400)} {'g' if self.lang == 'it' else 'd'}"
        if seconds >= 3600 and seconds % 3600 == 0:
            return f"{int(seconds // 3600)} h"
        return self.duration(seconds)

    def value(self, value: Any, unit: str = "", decimals: int | None = None) -> str:
        if value is None:
            return "–"
        if isinstance(value, bool):
            return self.t("yes") if value else self.t("no")
        if isinstance(value, int | float):
            text = self.number(
                float(value), decimals if decimals is not None else (0 if isinstance(value, int) else None)
            )
            return f"{text} {unit}".strip()
        return str(value)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return UTC


def _css_string(text: str) -> str:
    """A CSS string literal: every character outside plain ASCII letters, digits and spaces escaped
    (a machine's name cannot end the string, nor the <style> element)."""
    return (
        '"' + "".join(c if c.isascii() and (c.isalnum() or c in " .-_:/()") else f"\\{ord(c):x} " for c in text) + '"'
    )


def _tags(tags: dict[str, str]) -> str:
    return " ".join(f'<span class="tag">{_e(k)}={_e(v)}</span>' for k, v in tags.items()) or "–"


# --- charts -----------------------------------------------------------------------------------------


def _palette(index: int) -> str:
    colours = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")
    return colours[index % len(colours)]


def _sparkline(signal: SignalInfo, start: int, end: int) -> str:
    """A 180 by 34 chart of the signal over the whole period: mean line and min–max band, or value strip."""
    width, height, pad = 180.0, 34.0, 2.0
    span = max(1, end - start)

    def x(ns: int) -> float:
        return round(pad + (width - 2 * pad) * (ns - start) / span, 1)

    buckets = [b for b in signal.buckets if b.count]
    if not buckets:
        return ""
    parts = [
        f'<svg class="spark" viewBox="0 0 {width:g} {height:g}" role="img" aria-label="{_e(signal.field)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="0" y="0" width="{width:g}" height="{height:g}" fill="#f9fafb"/>',
    ]
    step = span / 120
    numeric = all(b.mean is not None for b in buckets) and signal.kind != "bool"
    if numeric:
        low = min(b.min if b.min is not None else b.mean or 0.0 for b in buckets)
        high = max(b.max if b.max is not None else b.mean or 0.0 for b in buckets)
        if not (math.isfinite(low) and math.isfinite(high)):
            return ""
        if high - low < 1e-12:
            low, high = low - 1, high + 1

        def y(value: float) -> float:
            return round(height - pad - (height - 2 * pad) * (value - low) / (high - low), 1)

        runs: list[list[Any]] = [[]]
        for b in buckets:
            if runs[-1] and b.time - runs[-1][-1].time > 1.5 * step + 1:
                runs.append([])  # a gap in the data is a gap in the line
            runs[-1].append(b)
        for run in runs:
            tops = [(x(b.time), y(b.max if b.max is not None else b.mean or 0.0)) for b in run]
            bottoms = [(x(b.time), y(b.min if b.min is not None else b.mean or 0.0)) for b in reversed(run)]
            if len(run) == 1:
                px = tops[0][0]
                parts.append(
                    f'<line x1="{px}" y1="{tops[0][1]}" x2="{px}" y2="{bottoms[0][1]}" '
                    'stroke="#1d4ed8" stroke-width="1.5"/>'
                )
                continue
            band = " ".join(f"{a},{b}" for a, b in tops + bottoms)
            line = " ".join(f"{x(b.time)},{y(b.mean or 0.0)}" for b in run)
            parts.append(f'<polygon points="{band}" fill="#1d4ed8" fill-opacity="0.18"/>')
            parts.append(f'<polyline points="{line}" fill="none" stroke="#1d4ed8" stroke-width="1"/>')
    else:
        values = Counter(str(b.last) for b in buckets)
        order = {v: i for i, (v, _) in enumerate(values.most_common())}
        for b in buckets:
            x0 = x(b.time)
            x1 = min(x(int(b.time + step)), width - pad)
            colour = _palette(order[str(b.last)])
            parts.append(
                f'<rect x="{x0}" y="{pad + 4}" width="{max(0.6, round(x1 - x0, 1))}" height="{height - 2 * pad - 8}" '
                f'fill="{colour}"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _bar(link: Availability) -> str:
    """The period as one bar: connected, not connected, unknown. To scale, except that an outage too
    short to see is drawn 0.3 % wide (a one-minute outage in a quarter would be a thousandth of a pixel)."""
    width = 1000.0
    span = max(1, link.range_ns)
    rects = []
    # connected first, the rest on top of it: a short outage is never hidden by its neighbours
    for start, end, kind in sorted(link.stretches, key=lambda s: s[2] != "up"):
        x0 = width * (start - link.start_ns) / span
        w = width * (end - start) / span
        if kind != "up" and w < 3:
            x0, w = min(max(0.0, x0 - (3 - w) / 2), width - 3), 3.0
        colour = {"up": _UP, "down": _DOWN}.get(kind, _UNKNOWN)
        rects.append(
            f'<rect x="{x0:.1f}" y="0" width="{w:.1f}" height="14" fill="{colour}" shape-rendering="crispEdges"/>'
        )
    return (
        f'<svg class="bar" viewBox="0 0 {width:g} 14" preserveAspectRatio="none" role="img" '
        f'aria-label="{_e(link.connector)}" xmlns="http://www.w3.org/2000/svg">' + "".join(rects) + "</svg>"
    )


# --- sections -------------------------------------------------------------------------------------------


def _cause(f: _Format, outage: Outage) -> str:
    text = f.t(f"cause.{outage.cause}")
    extra = [s for s in outage.states if s not in ("gateway_start",)]
    if outage.gateway_down and outage.cause not in ("gateway_stopped", "gateway_lost"):
        text += f", {f.t('gateway_down')}"
    if extra:
        text += f' <span class="states">({_e(", ".join(extra))})</span>'
    return text


def _availability(f: _Format, report: InterconnectionReport, link: Availability) -> str:
    out = [f"<h3>{_e(f.t('connector'))} {_e(link.connector)}</h3>"]
    out.append(_bar(link))
    out.append(
        '<div class="legend">'
        f'<span><i class="sw" style="background:{_UP}"></i>{_e(f.t("up_time"))}</span>'
        f'<span><i class="sw" style="background:{_DOWN}"></i>{_e(f.t("down_time"))}</span>'
        f'<span><i class="sw" style="background:{_UNKNOWN}"></i>{_e(f.t("unknown_time"))}</span>'
        f'<span class="muted">{_e(f.date(link.start_ns))} – {_e(f.date(link.end_ns - 1))}</span></div>'
    )
    rows = [
        (f.t("in_range"), f"{f.duration(link.range_ns / 1e9)} ({f.count(link.range_ns // 10**9)} s)"),
        (f.t("up_time"), f"{f.duration(link.connected_ns / 1e9)} ({f.count(round(link.connected_ns / 1e9))} s)"),
        (f.t("down_time"), f"{f.duration(link.down_ns / 1e9)} ({f.count(round(link.down_ns / 1e9))} s)"),
        (f.t("unknown_time"), f"{f.duration(link.unknown_ns / 1e9)} ({f.count(round(link.unknown_ns / 1e9))} s)"),
    ]
    # (no record of the link in the period: "unknown", not "0 %")
    known = link.unknown_ns < link.range_ns
    ratio = f"{f.percent(link.ratio)} {f.t('of_range')}" if known else f.t("unknown_time")
    if link.unknown_ns and link.known_ratio is not None:
        ratio += f" · {f.percent(link.known_ratio)} {f.t('of_known')}"
    rows.append((f.t("availability"), ratio))
    out.append('<table class="kv" data-connector="' + _e(link.connector) + '">')
    for key, value in rows:
        out.append(f'<tr><th>{_e(key)}</th><td class="num" style="text-align:left">{_e(value)}</td></tr>')
    out.append("</table>")
    if link.unknown_ns:
        first_known = next((s for s, _, k in link.stretches if k != "unknown"), None)
        message = f.t("unknown_why", time=f.time(first_known)) if first_known is not None else f.t("no_journal")
        out.append(f'<p class="note">{_e(message)}</p>')
    out.append(f"<h3>{_e(f.t('outages'))} ({len(link.outages)})</h3>")
    if not link.outages:
        out.append(f"<p>{_e(f.t('no_outage'))}</p>")
        return "".join(out)
    shown = link.outages
    hidden: list[Outage] = []
    if len(shown) > MAX_OUTAGES:
        longest = sorted(shown, key=lambda o: o.end_ns - o.start_ns, reverse=True)[:MAX_OUTAGES]
        keep = {id(o) for o in longest}
        hidden = [o for o in shown if id(o) not in keep]
        shown = [o for o in shown if id(o) in keep]
    out.append(
        '<table class="outages"><colgroup><col style="width:5%"><col style="width:21%"><col style="width:21%">'
        '<col style="width:15%"><col></colgroup>'
        f"<thead><tr><th>#</th><th>{_e(f.t('start'))}</th><th>{_e(f.t('end'))}</th>"
        f'<th class="num">{_e(f.t("duration"))}</th><th>{_e(f.t("cause"))}</th></tr></thead><tbody>'
    )
    for number, outage in enumerate(shown, 1):
        start = _e(f.time(outage.start_ns))
        if outage.open_start:
            start += f'<br><span class="muted">{_e(f.t("before_range"))}</span>'
        if outage.estimated:
            start += f' <span class="muted" title="{_e(f.t("estimated"))}">≈</span>'
        end = _e(f.time(outage.end_ns))
        if outage.open_end:
            end += f'<br><span class="muted">{_e(f.t("after_range"))}</span>'
        out.append(
            f'<tr data-start="{outage.start_ns}" data-end="{outage.end_ns}"><td class="num">{number}</td>'
            f'<td class="time">{start}</td><td class="time">{end}</td>'
            f'<td class="num">{_e(f.duration(outage.seconds))}</td><td>{_cause(f, outage)}</td></tr>'
        )
    out.append("</tbody></table>")
    if any(o.estimated for o in shown):
        out.append(f'<p class="muted">≈ {_e(f.t("estimated"))}</p>')
    if hidden:
        total = sum(o.seconds for o in hidden)
        out.append(f"<p>{_e(f.t('more_outages', n=len(hidden), total=f.duration(total)))}</p>")
    return "".join(out)


def _signals(f: _Format, report: InterconnectionReport) -> str:
    out = [f"<h2>{_e(f.t('s_signals'))}</h2>"]
    if report.history_source is None:
        return "".join([*out, f'<p class="note">{_e(f.t("no_history"))}</p>'])
    out.append(f"<p>{_e(f.t('signals_intro', source=report.history_source))}</p>")
    if report.retention_cutoff_ns is not None:
        store = next((s for s in report.sinks if s.name == report.history_source), None)
        kept = f.span(store.retention) if store is not None and store.retention else "–"
        message = f.t("retention_cut", retention=kept, time=f.time(report.retention_cutoff_ns))
        out.append(f'<p class="note" id="retention-note">{_e(message)}</p>')
    if not report.signals:
        return "".join([*out, f'<p class="note">{_e(f.t("no_signals"))}</p>'])
    out.append(
        f'<table class="signals"><thead><tr><th>{_e(f.t("signal"))}</th><th>{_e(f.t("first"))}</th>'
        f'<th>{_e(f.t("last"))}</th><th class="num">{_e(f.t("samples"))}</th><th>{_e(f.t("trend"))}</th>'
        "</tr></thead><tbody>"
    )
    shared = report.tags
    for s in report.signals:
        label = s.display(f.lang)
        name = _e(label) + (f' <span class="muted">({_e(s.unit)})</span>' if s.unit else "")
        detail = f"{_e(s.measurement)}.{_e(s.field)}"
        extra = {k: v for k, v in s.tags.items() if shared.get(k) != v}
        if extra:
            detail += " " + _tags(extra)
        values = ""
        if s.minimum is not None and s.maximum is not None and s.kind != "bool":
            values = f.t(
                "range_values",
                min=f.value(s.minimum, s.unit, s.decimals),
                max=f.value(s.maximum, s.unit, s.decimals),
            )
        elif s.buckets:
            seen = Counter(str(f.value(b.last)) for b in s.buckets if b.count)
            values = " · ".join(v for v, _ in seen.most_common(4))
        out.append(
            f'<tr data-field="{_e(s.field)}" data-measurement="{_e(s.measurement)}" data-count="{s.count}">'
            f'<td>{name}<br><span class="mono muted">{detail}</span></td>'
            f'<td class="time">{_e(f.time(s.first_ns)) if s.first_ns is not None else "–"}</td>'
            f'<td class="time">{_e(f.time(s.last_ns)) if s.last_ns is not None else "–"}</td>'
            f'<td class="num">{_e(f.count(s.count))}</td>'
            f'<td>{_sparkline(s, report.start_ns, report.end_ns)}<span class="muted">{_e(values)}</span></td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


def _writes(f: _Format, report: InterconnectionReport) -> str:
    out = [f"<h2>{_e(f.t('s_writes'))}</h2>", f"<p>{_e(f.t('writes_intro', folder=report.audit_folder))}</p>"]
    if not report.writes:
        return "".join([*out, f"<p>{_e(f.t('no_writes'))}</p>"])
    out.append(
        f'<table class="writes"><thead><tr><th>{_e(f.t("time"))}</th><th>{_e(f.t("who"))}</th>'
        f"<th>{_e(f.t('field'))}</th><th>{_e(f.t('change'))}</th><th>{_e(f.t('read_back'))}</th>"
        f"<th>{_e(f.t('result'))}</th></tr></thead><tbody>"
    )
    for entry in report.writes:
        at = entry.get("at_ms")
        when = f.time(int(at) * 1_000_000) if isinstance(at, int) else str(entry.get("at", "–"))
        who = " · ".join(str(entry[k]) for k in ("user", "role", "client") if entry.get(k))
        result = str(entry.get("result") or "")
        key = f"result.{result}"
        outcome = _e(f.t(key) if key in TEXT else result)
        message = entry.get("message")
        if message and result != "written":
            outcome += f'<br><span class="muted">{_e(message)}</span>'
        change = f"{_e(f.value(entry.get('old')))} → {_e(f.value(entry.get('requested')))}"
        out.append(
            f'<tr data-result="{_e(result)}" data-field="{_e(entry.get("field", ""))}"><td class="time">{_e(when)}</td>'
            f"<td>{_e(who or '–')}</td><td>{_e(entry.get('field', '–'))}"
            f'<br><span class="muted">{_e(entry.get("connector", ""))}</span></td><td>{change}</td>'
            f"<td>{_e(f.value(entry.get('read_back')))}</td>"
            f'<td class="{"ok" if result == "written" else "ko"}">{outcome}</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


def _sinks(f: _Format, report: InterconnectionReport) -> str:
    out = [
        f"<h2>{_e(f.t('s_sinks'))}</h2>",
        f'<table class="sinks"><thead><tr><th>{_e(f.t("sink"))}</th><th>{_e(f.t("type"))}</th>'
        f"<th>{_e(f.t('where'))}</th><th>{_e(f.t('retention'))}</th><th>{_e(f.t('this_machine'))}</th>"
        "</tr></thead><tbody>",
    ]
    for sink in report.sinks:
        out.append(
            f'<tr data-sink="{_e(sink.name)}"><td>{_e(sink.name)}</td><td>{_e(sink.type)}</td>'
            f'<td class="mono">{_e(sink.destination)}</td>'
            f"<td>{_e(f.span(sink.retention) if sink.retention else f.t('forever'))}</td>"
            f"<td>{_e(f.t('yes') if sink.fed else f.t('no'))}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _connections(f: _Format, report: InterconnectionReport) -> str:
    out = [f"<h2>{_e(f.t('s_connection'))}</h2>"]
    out.append(
        f'<table class="kv"><tr><th>{_e(f.t("machine"))}</th><td><strong>{_e(report.machine)}</strong></td></tr>'
        f"<tr><th>{_e(f.t('tags'))}</th><td>{_tags(report.tags)}</td></tr></table>"
    )
    for c in report.connections:
        writable = "<br>".join(
            f"<strong>{_e(name)}</strong>: "
            + _e("; ".join(f.t(f"lim.{k}", **{k: v}) for k, v in limits.items()) or f.t("lim.none"))
            for name, limits in c.writable
        ) or _e(f.t("none"))
        rows = [
            ("protocol", _e(c.protocol)),
            ("endpoint", f'<span class="mono">{_e(c.endpoint)}</span>'),
            ("security", _e(f.t(c.security[0], **c.security[1]))),
            ("identity", _e(f.t(c.identity[0], **c.identity[1]))),
            ("sampling", _e(f.t(c.sampling[0], **c.sampling[1]))),
            ("static_tags", _tags(c.tags)),
            ("feeds", _e(", ".join(c.sinks)) or "–"),
            ("writable", writable),
        ]
        out.append(f'<h3>{_e(f.t("connector"))} {_e(c.name)} <span class="muted">({_e(c.type)})</span></h3>')
        out.append(f'<table class="kv connection" data-connector="{_e(c.name)}">')
        out += [f"<tr><th>{_e(f.t(key))}</th><td>{value}</td></tr>" for key, value in rows]
        out.append("</table>")
    return "".join(out)


def _summary(f: _Format, report: InterconnectionReport) -> str:
    written = sum(1 for w in report.writes if w.get("result") == "written")
    refused = len(report.writes) - written
    links = report.availability
    connected = sum(a.connected_ns for a in links)
    total = sum(a.range_ns for a in links)
    unknown = sum(a.unknown_ns for a in links)
    down = sum(a.down_ns for a in links)
    if not total or unknown >= total:  # no record of the link at all: not "0 %"
        up, up_note = "–", f.t("unknown_time").lower()
    else:
        up, up_note = f.percent(connected / total), f.t("of_range")
        if unknown:
            up_note += f", {f.duration(unknown / 1e9)} {f.t('unknown_time').lower()}"
    cells = [
        (f.t("machine"), _e(report.machine), ""),
        (
            f.t("protocol"),
            _e(", ".join(sorted({c.protocol.split(" (")[0].split(",")[0] for c in report.connections}))),
            "",
        ),
        (f.t("connected"), _e(up), _e(up_note)),
        (f.t("signals_n"), _e(f.count(len(report.signals))), ""),
        (f.t("samples_n"), _e(f.count(sum(s.count for s in report.signals))), ""),
        (f.t("writes_n"), _e(f.count(len(report.writes))), _e(f.t("writes_sum", written=written, refused=refused))),
        (f.t("outages"), _e(f.count(sum(len(a.outages) for a in links))), _e(f.duration(down / 1e9)) if down else ""),
        (f.t("sinks_n"), _e(f.count(len(report.sinks))), _e(", ".join(s.type for s in report.sinks))),
    ]
    body = "".join(
        f"<div><dt>{_e(k)}</dt><dd>{v}{' <small>' + small + '</small>' if small else ''}</dd></div>"
        for k, v, small in cells
    )
    return f'<h2>{_e(f.t("summary"))}</h2><dl class="summary">{body}</dl>'


def _gateway(f: _Format, report: InterconnectionReport) -> str:
    sources = [
        (
            f.t("source.history"),
            next(
                (f"{s.name}: {s.destination}" for s in report.sinks if s.name == report.history_source),
                report.history_source or "–",
            ),
        ),
        (
            f.t("source.link"),
            report.link_folder
            + (f" ({f.t('journal_since', time=f.time(report.journal_start_ns))})" if report.journal_start_ns else ""),
        ),
        (f.t("source.audit"), report.audit_folder),
    ]
    rows = [
        (f.t("gateway"), _e(report.gateway)),
        (f.t("version"), _e(report.version)),
        (f.t("files"), "<br>".join(f'<span class="mono">{_e(p)}</span>' for p in report.config_files) or "–"),
        (
            f.t("sha"),
            f'<span class="mono" id="config-sha256">{_e(report.config_sha256)}</span>'
            f'<br><span class="muted">{_e(f.t("sha_note"))}</span>',
        ),
        (f.t("sources"), "<br>".join(f'{_e(k)}: <span class="mono">{_e(v)}</span>' for k, v in sources)),
    ]
    table = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<h2>{_e(f.t("s_gateway"))}</h2><table class="kv">{table}</table>'


def _scope(f: _Format) -> str:
    parts = [f'<section class="scope" id="scope"><h2>{_e(f.t("s_scope"))}</h2>']
    for title, text in SCOPE[f.lang]:
        parts.append(f"<h3>{_e(title)}</h3><p>{_e(text)}</p>")
    parts.append("</section>")
    return "".join(parts)


def _period(f: _Format, start: int, end: int) -> str:
    """Whole days as dates, the last one included (01/01/2026 – 31/03/2026); else the times."""
    moments = [f.moment(t) for t in (start, end)]
    if start % 10**9 == 0 == end % 10**9 and all((m.hour, m.minute, m.second) == (0, 0, 0) for m in moments):
        return f"{f.date(start)} – {f.date(end - 1)}"
    return f"{f.time(start, seconds=False)} – {f.time(end, seconds=False)}"


def render_html(report: InterconnectionReport, lang: Lang = "it") -> str:
    """The whole report as one HTML document in ``lang``."""
    f = _Format(lang, _tz(report.timezone))
    period = _period(f, report.start_ns, report.end_ns)
    title = f"{f.t('title')} — {report.machine}"
    footer = _css_string(f.t("footer", machine=report.machine, period=period))
    generated = f.t("generated", time=f.time(report.generated_ns), gateway=report.gateway, version=report.version)
    head = [
        "<!doctype html>",
        f'<html lang="{lang}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f'<meta name="generator" content="shopfloor gateway {_e(report.version)}">',
        f"<style>{_CSS.replace('FOOTER', footer)}</style>",
        "</head><body>",
        "<header>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub"><strong>{_e(f.t("period"))}:</strong> <span id="period">{_e(period)}</span> · '
        f"{_e(f.t('times_in', tz=report.timezone))}</p>",
        f'<p class="sub muted">{_e(generated)}</p>',
    ]
    if report.asked_end_ns > report.end_ns:
        head.append(f'<p class="note">{_e(f.t("cut", asked=f.time(report.asked_end_ns, seconds=False)))}</p>')
    head.append("</header>")
    body = [
        _summary(f, report),
        _connections(f, report),
        f"<h2>{_e(f.t('s_link'))}</h2><p>{_e(f.t('link_intro'))}</p>",
        *(_availability(f, report, link) for link in report.availability),
        _signals(f, report),
        _writes(f, report),
        _sinks(f, report),
        _gateway(f, report),
        _scope(f),
        "</body></html>",
    ]
    return "\n".join(head + body) + "\n"
