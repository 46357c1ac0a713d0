"""Why a sample is not a level: the `reason` of a reading upstream, in the status, in replay.

A StrEnum, so a reason is also the plain string that goes on the wire and compares equal to it.
docs/upstream.md has a row for each (tests/test_docs.py holds the two equal).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # What a driver says about a read that gave no value.
    NO_ECHO = "no_echo"  # an ultrasonic ping heard nothing back
    TIMEOUT = "timeout"  # the sensor did not answer in time
    GARBAGE = "garbage"  # bytes arrived, but no well-formed frame among them
    CRC_ERROR = "crc_error"  # a Modbus answer with a wrong checksum
    EXCEPTION_RESPONSE = "exception_response"  # the Modbus device answered with an exception
    INVALID_RESPONSE = "invalid_response"  # an answer that is not a register value
    PORT_ERROR = "port_error"  # the serial port is gone or cannot be opened
    DRIVER_ERROR = "driver_error"  # the driver itself failed (a bug, or a library's exception)
    BACKOFF = "backoff"  # the supervisor skipped the read: resting a failing sensor
    NO_READING = "no_reading"  # no value and no reason given
    # What the pipeline decides about a value.
    NOT_A_NUMBER = "not_a_number"
    INVALID_VALUE = "invalid_value"  # one of sensor.invalid_values (a sensor's error code)
    OUT_OF_RANGE = "out_of_range"  # outside [sensor.min_range_m, sensor.max_range_m]
    IMPLAUSIBLE = "implausible"  # faster than the site allows, or at a rejected height
    FALSE_ECHO = "false_echo"  # at the height of a learned false echo
    UNCONFIRMED = "unconfirmed"  # a jump across a silence, believed when the next agrees
    ACQUIRING = "acquiring"  # the gate has not yet seen enough readings to believe one
