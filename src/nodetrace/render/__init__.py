"""Renderers: traces as text (rich), kernel TRACE lines, ofproto/trace text and JSON."""
