"""``Binding``: model changes out to groups, client actions in to models.

Same names and behaviour as ``channels.binding.base`` of Channels 1.x, with
these deliberate fixes (docs/migrating.md lists them):

- **Sent on commit.** Outbound messages are serialized when the signal
  fires but sent from ``transaction.on_commit``, so a rolled-back change
  sends nothing and a client never reads a row that is not there yet.
  Inside a test's wrapping transaction only (``ChannelTestCase``, pytest's
  ``django_db``) they are sent at once, as the test's transaction stands in
  for autocommit.
- **Old groups from the stored row.** 1.x computed the groups an updated
  instance *left* from the instance in ``pre_save``, which already carries
  the new values, so "left the group" was never seen. chanlite asks
  ``group_names`` about the row as stored (one query per update).
- **Refusals are log lines.** Bad inbound input (no or unknown ``action``,
  a pk that does not exist, invalid or non-bound fields) and denied
  permissions are logged on ``chanlite.binding`` and change nothing; the
  write runs in ``transaction.atomic`` so a failing one leaves no trace.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist, ValidationError
from django.core.serializers.base import DeserializationError
from django.db import DatabaseError, connections, router, transaction
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

from .. import DEFAULT_CHANNEL_LAYER
from ..auth import channel_session_user
from ..channel import Group
from ..sessions import channel_session

__all__ = ["CREATE", "UPDATE", "DELETE", "Binding", "BindingMetaclass", "InvalidInbound"]

logger = logging.getLogger("chanlite.binding")

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
ACTIONS = (CREATE, UPDATE, DELETE)


class InvalidInbound(ValueError):
    """An inbound message a binding refuses (the worker logs it, writes nothing)."""


class BindingMetaclass(type):
    """Collects Binding subclasses; connects their signals once apps are ready.

    Classes defined before ``AppConfig.ready`` (the usual case: a
    ``bindings.py`` imported by the routing) are registered by
    ``register_all()`` from chanlite's app config; later ones register as
    they are created, which is also when a missing ``fields``/``exclude``
    raises ``ValueError``.
    """

    register_immediately: ClassVar[bool] = False
    binding_classes: ClassVar[list[type]] = []

    def __new__(mcs, name: str, bases: tuple, body: dict) -> type:
        klass = super().__new__(mcs, name, bases, body)
        if bases:
            mcs.binding_classes.append(klass)
            if mcs.register_immediately:
                klass.register()
        return klass

    @classmethod
    def register_all(mcs) -> None:
        for binding_class in list(mcs.binding_classes):
            binding_class.register()
        mcs.register_immediately = True


class _CommitSend:
    """The on-commit callback of one change (a class, so the test helpers
    can find binding sends among a connection's pending callbacks)."""

    def __init__(self, binding: type[Binding], messages: list[tuple[str, dict]]) -> None:
        self.binding = binding
        self.messages = messages

    def __call__(self) -> None:
        self.binding._deliver(self.messages)


def _in_test_transaction(connection: Any, nested_ok: bool) -> bool:
    """Is ``connection`` inside a test case's wrapping transaction (Django
    marks those blocks ``_from_testcase``) and, apart from savepoint-less
    blocks when ``nested_ok``, nothing else?"""
    blocks = getattr(connection, "atomic_blocks", None)
    if not (connection.in_atomic_block and blocks and blocks[0]._from_testcase):
        return False
    return all(b._from_testcase or (nested_ok and not b.savepoint) for b in blocks)


def _send_after_commit(send: _CommitSend, using: str) -> None:
    """Run ``send`` when the change commits (at once outside a transaction).

    Inside a test case's transaction, which never commits, the test case's
    blocks stand for autocommit: the messages go out at once, as they would
    in production. Savepoint-less blocks (Django's own, around a delete or
    the save of an inherited model) cannot roll back on their own, so they
    do not hold the messages back either. Sends held by the test's own
    ``atomic()`` blocks go out when a test client next reads
    (:func:`send_pending_in_tests`) - by then those blocks have committed
    as far as the test can tell.
    """
    connection = transaction.get_connection(using)
    if _in_test_transaction(connection, nested_ok=True):
        send()
    else:
        transaction.on_commit(send, using=using)


def send_pending_in_tests() -> None:
    """Deliver binding sends held by atomic blocks a test has since left.

    Called by the testing package before it reads messages (``receive``,
    ``get_next_message``, ``run_until_idle``); does nothing outside a test
    case's transaction, and leaves every other on-commit callback alone.
    """
    for connection in connections.all(initialized_only=True):
        if not _in_test_transaction(connection, nested_ok=False):
            continue
        hooks = connection.run_on_commit
        ours = [hook for hook in hooks if isinstance(hook[1], _CommitSend)]
        if ours:
            connection.run_on_commit = [h for h in hooks if not isinstance(h[1], _CommitSend)]
            for hook in ours:
                hook[1]()


class Binding(metaclass=BindingMetaclass):
    """A two-way binding between a Django model and channel groups.

    Outbound: implement ``group_names(instance)`` and ``serialize``; every
    create/update/delete of ``model`` sends one message per group (an update
    that moves the instance between groups sends ``delete`` to the groups
    it left and ``create`` to those it joined).

    Inbound: place ``MyBinding.consumer`` in a demultiplexer (or route it);
    implement ``deserialize`` and ``has_permission``; ``create``/``update``
    /``delete`` apply permitted actions.
    """

    #: The model class, or "app_label.ModelName". None directly on a class
    #: marks it abstract.
    model: ClassVar[Any] = None
    #: Field names to send and accept (``["__all__"]`` for every field) ...
    fields: ClassVar[Any] = None
    #: ... or field names to leave out. One of the two is required.
    exclude: ClassVar[Any] = None
    #: Fixed group names (an alternative to overriding ``group_names``).
    groups: ClassVar[Iterable[str]] = ()
    #: The stream name (the multiplexed stream of WebsocketBinding).
    stream: ClassVar[str | None] = None
    #: The channel layer outbound messages go through.
    channel_layer_alias: ClassVar[str] = DEFAULT_CHANNEL_LAYER
    # Decorators of the inbound handler.
    channel_session_user: ClassVar[bool] = True
    channel_session: ClassVar[bool] = False

    model_label: ClassVar[str]

    #: The kwargs of the signal that triggered an outbound send (``created``,
    #: ``update_fields``, ``using``, ...), for ``serialize`` overrides.
    signal_kwargs: dict[str, Any] | None = None

    # ------------------------------------------------------------ registration

    @classmethod
    def register(cls) -> None:
        """Resolve the model and connect the four model signals."""
        for model in cls.get_registered_models():
            pre_save.connect(cls.pre_save_receiver, sender=model)
            post_save.connect(cls.post_save_receiver, sender=model)
            pre_delete.connect(cls.pre_delete_receiver, sender=model)
            post_delete.connect(cls.post_delete_receiver, sender=model)

    @classmethod
    def unregister(cls) -> None:
        """Disconnect the signals and forget the class (tests that define
        bindings inline call this so later tests do not trigger them)."""
        if isinstance(cls.model, type):
            pre_save.disconnect(cls.pre_save_receiver, sender=cls.model)
            post_save.disconnect(cls.post_save_receiver, sender=cls.model)
            pre_delete.disconnect(cls.pre_delete_receiver, sender=cls.model)
            post_delete.disconnect(cls.post_delete_receiver, sender=cls.model)
        if cls in BindingMetaclass.binding_classes:
            BindingMetaclass.binding_classes.remove(cls)

    @classmethod
    def get_registered_models(cls) -> list[type]:
        """The model as a class (resolving a string); [] for an abstract binding."""
        if cls.model is None:
            if "model" in cls.__dict__:
                return []
            raise ValueError(f"You must set the model attribute on Binding {cls!r}!")
        if cls.fields is None and cls.exclude is None:
            raise ValueError(f"You must set the fields or exclude attribute on Binding {cls!r}!")
        if cls.fields is not None and cls.exclude is not None:
            raise ValueError(f"Binding {cls!r} sets both fields and exclude; keep one of them")
        if isinstance(cls.model, str):
            cls.model = apps.get_model(cls.model)
        cls.model_label = (
            f"{cls.model._meta.app_label.lower()}.{cls.model._meta.object_name.lower()}"
        )
        return [cls.model]

    # ---------------------------------------------------------------- outbound

    @classmethod
    def encode(cls, stream: str, payload: dict) -> dict:
        """The channel message carrying ``payload`` on ``stream``."""
        raise NotImplementedError(f"{cls.__name__} must define encode(stream, payload)")

    @classmethod
    def pre_save_receiver(cls, instance: Any, **kwargs: Any) -> None:
        cls.pre_change_receiver(instance, CREATE if instance.pk is None else UPDATE)

    @classmethod
    def post_save_receiver(cls, instance: Any, created: bool, **kwargs: Any) -> None:
        cls.post_change_receiver(instance, CREATE if created else UPDATE, created=created, **kwargs)

    @classmethod
    def pre_delete_receiver(cls, instance: Any, **kwargs: Any) -> None:
        cls.pre_change_receiver(instance, DELETE)

    @classmethod
    def post_delete_receiver(cls, instance: Any, **kwargs: Any) -> None:
        cls.post_change_receiver(instance, DELETE, **kwargs)

    @classmethod
    def pre_change_receiver(cls, instance: Any, action: str) -> None:
        """Note the groups ``instance`` is in before the change: none for a
        create, those of the stored row for an update (a new instance with
        an explicit pk has none), the instance's own for a delete."""
        if action == CREATE:
            groups: set[str] = set()
        elif action == UPDATE:
            groups = cls._stored_groups(instance)
        else:
            groups = set(cls._call_group_names(instance, action))
        cls._remember_groups(instance, groups)

    @classmethod
    def _remember_groups(cls, instance: Any, groups: set[str]) -> None:
        # Kept on the instance (not the class, as some 1.x versions did), so
        # two threads saving two instances cannot mix their groups up.
        if not hasattr(instance, "_binding_group_names"):
            instance._binding_group_names = {}
        instance._binding_group_names[cls] = groups

    @classmethod
    def _stored_groups(cls, instance: Any) -> set[str]:
        """Groups of the row as stored now (empty for a row not stored yet)."""
        if instance.pk is None:
            return set()
        model = type(instance)
        using = instance._state.db or router.db_for_write(model, instance=instance)
        stored = model._base_manager.using(using).filter(pk=instance.pk).first()
        if stored is None:
            return set()
        return set(cls._call_group_names(stored, UPDATE))

    @classmethod
    def post_change_receiver(cls, instance: Any, action: str, **kwargs: Any) -> None:
        """Serialize now; send to the groups once the change commits."""
        old = getattr(instance, "_binding_group_names", {}).pop(cls, set())
        new = set() if action == DELETE else set(cls._call_group_names(instance, action))
        self = cls()
        self.instance = instance
        # Django DDP's order: DELETE, UPDATE, then CREATE.
        messages: list[tuple[str, dict]] = []
        for groups, group_action in ((old - new, DELETE), (old & new, UPDATE), (new - old, CREATE)):
            messages += self.build_messages(instance, groups, group_action, **kwargs)
        if not messages:
            return
        using = kwargs.get("using") or router.db_for_write(type(instance))
        _send_after_commit(_CommitSend(cls, messages), using)

    def build_messages(self, instance: Any, group_names: Iterable[str], action: str,
                       **kwargs: Any) -> list[tuple[str, dict]]:
        """``(group, message)`` pairs for one action (none for no groups or
        an empty payload)."""
        group_names = sorted(group_names)
        if not group_names:
            return []
        self.signal_kwargs = kwargs
        payload = self.serialize(instance, action, **kwargs)
        if payload == {}:
            return []
        if self.stream is None:
            raise ValueError(f"{type(self).__name__} has no stream; set stream = '...'")
        message = self.encode(self.stream, payload)
        return [(group, message) for group in group_names]

    def send_messages(self, instance: Any, group_names: Iterable[str], action: str,
                      **kwargs: Any) -> None:
        """Serialize ``instance`` and send it to ``group_names`` now (1.x API)."""
        type(self)._deliver(self.build_messages(instance, group_names, action, **kwargs))

    @classmethod
    def _deliver(cls, messages: list[tuple[str, dict]]) -> None:
        # The change is committed: the messages go out now, even from inside a
        # consumer (immediately=True), and a failing layer is logged rather
        # than raised into the code that saved the model.
        for group, message in messages:
            try:
                Group(group, alias=cls.channel_layer_alias).send(message, immediately=True)
            except Exception:
                logger.exception("%s could not send to group %r", cls.__name__, group)

    @classmethod
    def group_names(cls, instance: Any) -> Iterable[str]:
        """The groups to send ``instance``'s changes to (override it)."""
        if cls.groups:
            return list(cls.groups)
        raise NotImplementedError(f"{cls.__name__} must define group_names(cls, instance)")

    @classmethod
    def _call_group_names(cls, instance: Any, action: str) -> Iterable[str]:
        # 1.0 bindings declared group_names(cls, instance, action); 1.1 dropped action.
        try:
            takes_action = len(inspect.signature(cls.group_names).parameters) >= 2
        except (TypeError, ValueError):
            takes_action = False
        names = cls.group_names(instance, action) if takes_action else cls.group_names(instance)
        return names or ()

    def serialize(self, instance: Any, action: str, **kwargs: Any) -> dict:
        """The payload for ``instance`` after ``action`` (override it)."""
        raise NotImplementedError(f"{type(self).__name__} must define serialize(instance, action)")

    # ----------------------------------------------------------------- inbound

    @classmethod
    def trigger_inbound(cls, message: Any, **kwargs: Any) -> None:
        """Apply the action a client sent, if it is valid and permitted."""
        from django.contrib.auth.models import AnonymousUser  # noqa: PLC0415 — models need Django's app registry

        self = cls()
        self.message = message
        self.kwargs = kwargs
        try:
            self.action, self.pk, self.data = self.deserialize(message)
        except (InvalidInbound, KeyError, ValueError, TypeError) as exc:
            logger.warning("%s refused an inbound message: %s", cls.__name__,
                           exc if isinstance(exc, InvalidInbound) else f"malformed ({exc!r})")
            return
        self.user = getattr(message, "user", None) or AnonymousUser()
        self.run_action(self.action, self.pk, self.data)

    @classmethod
    def get_handler(cls) -> Callable[..., Any]:
        """``trigger_inbound`` wrapped in the session decorators the flags ask for."""
        handler = cls.trigger_inbound
        if cls.channel_session_user:
            return channel_session_user(handler)
        if cls.channel_session:
            return channel_session(handler)
        return handler

    @classmethod
    def consumer(cls, message: Any, **kwargs: Any) -> None:
        """The inbound consumer: route it, or name it in a demultiplexer."""
        cls.get_handler()(message, **kwargs)

    def deserialize(self, message: Any) -> tuple[str, Any, Any]:
        """``(action, pk, data)`` from the message (override it)."""
        raise NotImplementedError(f"{type(self).__name__} must define deserialize(message)")

    def has_permission(self, user: Any, action: str, pk: Any) -> bool:
        """May ``user`` do ``action`` on ``pk``? (override it; the default denies)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define has_permission(user, action, pk)")

    def run_action(self, action: str, pk: Any, data: Any) -> None:
        """Check the action and the permission, then create/update/delete
        inside one atomic block; a refusal is a log line and no write."""
        name = type(self).__name__
        if action not in ACTIONS:
            logger.warning("%s refused an inbound message: unknown action %r (expected one of %s)",
                           name, action, ", ".join(ACTIONS))
            return
        if not self.has_permission(self.user, action, pk):
            logger.warning("%s refused %s of pk=%r: permission denied for %s", name, action, pk,
                           getattr(self.user, "get_username", lambda: "anonymous")() or "anonymous")
            return
        using = router.db_for_write(self.model)
        try:
            with transaction.atomic(using=using):
                if action == CREATE:
                    self.create(data)
                elif action == UPDATE:
                    self.update(pk, data)
                else:
                    self.delete(pk)
        except ObjectDoesNotExist:
            logger.warning("%s refused %s: no %s with pk=%r", name, action, self.model_label, pk)
        except (InvalidInbound, ValidationError, DeserializationError, FieldDoesNotExist,
                DatabaseError, ValueError, TypeError) as exc:
            logger.warning("%s refused %s of pk=%r: %s", name, action, pk, _describe(exc))
        else:
            send_pending_in_tests()  # a no-op outside a test case's transaction

    def create(self, data: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define create(data)")

    def update(self, pk: Any, data: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define update(pk, data)")

    def delete(self, pk: Any) -> None:
        """Delete the instance (DoesNotExist for a pk that is not there)."""
        self.model._default_manager.get(pk=pk).delete()


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "message_dict"):
        return "invalid fields " + "; ".join(
            f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
    return str(exc) or type(exc).__name__
